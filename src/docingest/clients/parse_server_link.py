"""The worker's side of the parse server (``parse_server``): start it, ask it for one child
per document, talk to that child, make sure it ends.

One server per process, shared by every event loop and thread in it; started lazily under a
lock, restarted when it has died, and stopped at interpreter exit (closing its stdin is its
signal to kill its children and exit; a worker killed with SIGKILL closes it too).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Final

from docingest.domain.errors import ErrorCode, TransientError

_SERVER_MODULE: Final = "docingest.clients.parse_server"
_SEND_TIMEOUT_S: Final = 5.0
#: the server answers `started` within this, or it is treated as unavailable
START_TIMEOUT_S: Final = 30.0
#: after a kill, the server reports the exit within this (it only has to reap)
_REAP_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 5.0
_READ_CHUNK: Final = 1 << 16


class ParseServer:
    """A handle on the server process; ``submit`` and ``kill`` are thread-safe."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def ensure_running(self) -> None:
        with self._lock:
            self._ensure_running()

    def submit(self, limits: Mapping[str, int | None], fds: list[int]) -> None:
        """Ask for a child reading ``fds[0]``, answering on ``fds[1]``, reported on ``fds[2]``."""
        message = json.dumps({"op": "parse", **limits}).encode()
        with self._lock:
            self._ensure_running()
            assert self._control is not None
            try:
                socket.send_fds(self._control, [message], fds)
            except OSError as exc:
                self._stop()
                raise TransientError(
                    ErrorCode.PARSER_UNAVAILABLE, "could not reach the parse server"
                ) from exc

    def kill(self, pid: int) -> None:
        with self._lock:
            if self._control is None:
                return
            with contextlib.suppress(OSError):  # a dead server has killed its children
                self._control.send(json.dumps({"op": "kill", "pid": pid}).encode())

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _ensure_running(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._start()

    def _start(self) -> None:
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.settimeout(_SEND_TIMEOUT_S)
        argv = [sys.executable, "-m", _SERVER_MODULE, "--control-fd", str(theirs.fileno())]
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self._env,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            raise TransientError(
                ErrorCode.PARSER_UNAVAILABLE, "could not start the parse server"
            ) from exc
        finally:
            theirs.close()
        self._control = ours

    def _stop(self) -> None:
        proc, control = self._proc, self._control
        self._proc = self._control = None
        if control is not None:
            control.close()
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ChildRun:
    """One document's child: its three channels, its pid once started, its exit code."""

    def __init__(self, server: ParseServer, limits: Mapping[str, int | None]) -> None:
        self._server = server
        self._input, child_input = socket.socketpair()
        self._answer, child_answer = socket.socketpair()
        self._status, child_status = socket.socketpair()
        theirs = [child_input, child_answer, child_status]
        try:
            server.submit(limits, [sock.fileno() for sock in theirs])
        except BaseException:
            self._close()
            raise
        finally:
            for sock in theirs:
                sock.close()
        for sock in (self._input, self._answer, self._status):
            sock.setblocking(False)
        self._lines = b""
        self.pid: int | None = None
        self.returncode: int | None = None

    async def started(self) -> int:
        line = await self._line()
        if line is None or not line.startswith("started "):
            raise TransientError(ErrorCode.PARSER_UNAVAILABLE, "the parse server did not fork")
        self.pid = int(line.split()[1])
        return self.pid

    async def exchange(self, data: bytes, max_output: int) -> bytes | None:
        """Feed the input and collect the answer concurrently; None past ``max_output``."""
        loop = asyncio.get_running_loop()
        writer = asyncio.create_task(self._feed(data))
        try:
            chunks: list[bytes] = []
            size = 0
            while chunk := await loop.sock_recv(self._answer, _READ_CHUNK):
                size += len(chunk)
                if size > max_output:
                    return None
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            if not writer.done():
                writer.cancel()
            await asyncio.wait([writer])

    async def exited(self) -> int:
        line = await self._line()
        if line is None or not line.startswith("exited "):
            raise TransientError(
                ErrorCode.PARSER_UNAVAILABLE, "the parse server stopped during a parse"
            )
        self.returncode = int(line.split()[1])
        return self.returncode

    async def finish(self) -> None:
        """Kill the child if it still runs, wait until the server has reaped it, close."""
        try:
            if self.pid is not None and self.returncode is None:
                self._server.kill(self.pid)
                with contextlib.suppress(TransientError, TimeoutError, OSError):
                    async with asyncio.timeout(_REAP_TIMEOUT_S):
                        await self.exited()
        finally:
            self._close()

    async def _feed(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(self._input, data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child stopped reading; its answer or exit status says why
        finally:
            self._input.close()

    async def _line(self) -> str | None:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._lines:
            chunk = await loop.sock_recv(self._status, 256)
            if not chunk:
                return None
            self._lines += chunk
        line, _, self._lines = self._lines.partition(b"\n")
        return line.decode("ascii", "replace")

    def _close(self) -> None:
        for sock in (self._input, self._answer, self._status):
            sock.close()


_server: ParseServer | None = None
_server_lock = threading.Lock()


def shared_server(env: Mapping[str, str]) -> ParseServer:
    """This process's server (its environment is fixed by the first caller)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = ParseServer(env)
            atexit.register(_server.stop)
        return _server
