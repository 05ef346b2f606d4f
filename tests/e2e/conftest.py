"""Fixtures for end-to-end tests: real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docingest.testing.procs import free_port, run_process

JWT_SECRET = "e2e-test-secret-0123456789abcdefghijklmnopqrstuvwxyz"


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
