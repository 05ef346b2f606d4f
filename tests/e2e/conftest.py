"""Fixtures for end-to-end tests: real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from docingest.bootstrap import Runtime
from docingest.testing.procs import free_port, run_process, stop_process, wait_http_ok
from tests.helpers import make_runtime

JWT_SECRET = "e2e-test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdefghijklmnop"
LLAMAPARSE_API_KEY = "llx-test-key"


@pytest.fixture
def fake_openai() -> Iterator[str]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "docingest.testing.fake_openai",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with run_process(args, ready_url=f"http://127.0.0.1:{port}/healthz", timeout_s=30):
        yield f"http://127.0.0.1:{port}"


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m docingest ARGS` as a user runs it; output captured, exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", "docingest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stack_env(dsn: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
    env.update(
        DOCINGEST_HOME=str(home),
        DOCINGEST_DATABASE_URL=dsn,
        DOCINGEST_JWT_SECRET=JWT_SECRET,
        DOCINGEST_LOG_FORMAT="json",
        **extra,
    )
    return env


@contextmanager
def start_fake_llamaparse(*extra_args: str) -> Iterator[str]:
    """The fake LlamaParse as a process (callback mode unless `--mode` says otherwise)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "docingest.testing.fake_llamaparse",
        "--port",
        str(port),
        "--api-key",
        LLAMAPARSE_API_KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        *extra_args,
    ]
    with run_process(args, ready_url=f"http://127.0.0.1:{port}/healthz"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def llamaparse_up(
    dsn: str, home: Path, parser_url: str, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`docingest up` with the llamaparse parser pointed at `parser_url`; yields the API url."""
    port = free_port()
    full_env = stack_env(
        dsn,
        home,
        DOCINGEST_PARSER="llamaparse",
        DOCINGEST_LLAMAPARSE_URL=parser_url,
        DOCINGEST_LLAMAPARSE_API_KEY=LLAMAPARSE_API_KEY,
        DOCINGEST_WEBHOOK_SECRET=WEBHOOK_SECRET,
        DOCINGEST_PUBLIC_URL=f"http://127.0.0.1:{port}",
        DOCINGEST_EMBED_DIMENSIONS="256",
        **(env or {}),
    )
    cmd = [sys.executable, "-m", "docingest", "up", "--workers", str(workers), "--port", str(port)]
    up = subprocess.Popen(cmd, env=full_env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/readyz", 60, proc=up)
        yield base
    finally:
        stop_process(up, grace_s=30, kill_group=True)


def openai_env(fake: str, **extra: str) -> dict[str, str]:
    return {
        "DOCINGEST_EMBEDDER": "openai",
        "DOCINGEST_OPENAI_BASE_URL": f"{fake}/v1",
        "DOCINGEST_OPENAI_API_KEY": "sk-test",
        "DOCINGEST_EMBED_DIMENSIONS": "64",
        **extra,
    }


MakeRuntime = Callable[..., Runtime]


@pytest.fixture
async def openai_rt(dsn: str, tmp_path: Path, fake_openai: str) -> AsyncIterator[MakeRuntime]:
    """Runtimes on the test database embedding through the fake; their clients closed after."""
    made: list[Runtime] = []

    def make(**extra: str) -> Runtime:
        made.append(make_runtime(dsn, tmp_path, **openai_env(fake_openai, **extra)))
        return made[-1]

    yield make
    for rt in made:
        await rt.embedder.aclose()
