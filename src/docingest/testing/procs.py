"""Start helper processes (fake servers, the API, workers) for tests and wait for them.

Readiness is a real condition: an HTTP endpoint answering 2xx, polled until a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TypeVar

import httpx

POLL_INTERVAL_S = 0.05
T = TypeVar("T")
TERM_GRACE_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(
    url: str,
    timeout_s: float,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll `url` with GET until it answers 2xx (`verify`: TLS trust for https URLs).

    Raises TimeoutError naming the url when the deadline passes, or RuntimeError at once
    if `proc` (the process expected to serve it) exits first.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(verify=verify) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process {proc.pid} exited with code {proc.returncode} before {url} answered"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{url} did not answer 2xx within {timeout_s}s ({last})")
            try:
                response = client.get(url, timeout=min(2.0, max(remaining, 0.1)))
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if response.is_success:
                    return
                last = f"HTTP {response.status_code}"
            # Poll interval between readiness checks (the condition is the HTTP answer).
            time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def wait_for(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `predicate` until it returns something truthy (returned); TimeoutError(`what`)
    after `timeout_s`. For conditions observed from outside: database rows, HTTP answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(POLL_INTERVAL_S)  # poll interval; the condition is the predicate


def stop_process(
    proc: subprocess.Popen[bytes], grace_s: float = TERM_GRACE_S, *, kill_group: bool = False
) -> int:
    """SIGTERM, wait up to `grace_s`, then SIGKILL. Returns the exit code.

    With `kill_group` (for a process started as its own session leader, as `run_process`
    does), leftover members of its process group, i.e. children it did not stop, are
    SIGKILLed afterwards. Pids are allocated sequentially, so the group id cannot have been
    reused in the moments since the leader exited.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if kill_group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


@contextlib.contextmanager
def run_process(
    args: list[str],
    env: Mapping[str, str] | None = None,
    ready_url: str | None = None,
    timeout_s: float = 30.0,
    *,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `args`, wait until `ready_url` answers 2xx (if given), stop it on exit.

    `env` holds variables set on top of the current environment (None: inherit as is).
    The child gets its own process group so that whatever it spawns is cleaned up too.
    `stdout`/`stderr` default to inheriting ours (pytest captures them).
    """
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen(
        args,
        env=full_env,
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    try:
        if ready_url is not None:
            wait_http_ok(ready_url, timeout_s, proc=proc, verify=verify)
        yield proc
    finally:
        stop_process(proc, kill_group=True)
