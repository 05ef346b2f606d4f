"""The hostile-client suite's stack: `docingest up --workers 1` at default settings on a
database of its own, and an innocent user who measures what the attackers cost them."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from docingest.api.auth import mint_token
from docingest.testing.pdfgen import make_pdf
from docingest.testing.procs import free_port, stop_process, wait_http_ok
from tests.e2e.conftest import JWT_SECRET, WEBHOOK_SECRET, stack_env

INNOCENT_ADDRESS = "127.0.0.2"  # another source address than the attackers' 127.0.0.1
READ_P99_S = 1.0
UPLOAD_DEADLINE_S = 15.0


@dataclass
class Stack:
    url: str
    port: int
    dsn: str
    home: Path

    def token(self, user: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(JWT_SECRET, user)}"}

    def api_memory_mb(self) -> tuple[float, float]:
        """(resident now, peak resident) of the API process, from /proc (Linux)."""
        pid = json.loads((self.home / "up.json").read_text())["api"]
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        return (
            int(fields["VmRSS"].split()[0]) / 1024,
            int(fields["VmHWM"].split()[0]) / 1024,
        )


@pytest.fixture(scope="module")
def stack(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.get_uri(name)
    home = tmp_path_factory.mktemp("hostile-home")
    port = free_port()
    env = stack_env(dsn, home, DOCINGEST_WEBHOOK_SECRET=WEBHOOK_SECRET)
    cmd = [sys.executable, "-m", "docingest", "up", "--workers", "1", "--port", str(port)]
    up = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", 90, proc=up)
        yield Stack(url, port, dsn, home)
    finally:
        stop_process(up, grace_s=30, kill_group=True)
        with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Innocent:
    """A signed-in user on their own address: reads their job's status in a loop and uploads
    one one-page document, timing both."""

    stack: Stack
    user: uuid.UUID = field(default_factory=uuid.uuid4)
    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    upload_s: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=INNOCENT_ADDRESS)
        return httpx.Client(
            base_url=self.stack.url,
            transport=transport,
            headers=self.stack.token(self.user),
            timeout=30,
        )

    def read_loop(self, job_id: str) -> None:
        with self.client() as c:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    r = c.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                self.latencies_s.append(time.perf_counter() - started)
                if not r.is_success:
                    self.failures.append(str(r.status_code))
                self._stop.wait(0.05)

    def upload_and_wait(self, seed: int) -> str:
        """Upload a one-page PDF and wait for `complete`; returns the job id."""
        started = time.perf_counter()
        with self.client() as c:
            files = {"file": (f"{seed}.pdf", make_pdf(seed, pages=1), "application/pdf")}
            r = c.post("/v1/documents", files=files)
            assert r.status_code == 202, r.text
            job_id = str(r.json()["job_id"])
            deadline = started + UPLOAD_DEADLINE_S * 2
            while time.perf_counter() < deadline:
                status = c.get(f"/v1/jobs/{job_id}").json().get("status")
                if status == "complete":
                    self.upload_s = time.perf_counter() - started
                    return job_id
                assert status is None or not str(status).startswith("failed"), status
                time.sleep(0.1)
        raise AssertionError("the innocent upload never completed")

    def start_reads(self, job_id: str) -> threading.Thread:
        thread = threading.Thread(target=self.read_loop, args=(job_id,), daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> None:
        self._stop.set()
        thread.join(timeout=30)

    def report(self, phase: str) -> dict[str, float]:
        lat = sorted(self.latencies_s)
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        numbers = {
            "reads": len(lat),
            "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1),
            "upload_s": round(self.upload_s or -1, 2),
        }
        print(f"\n[hostile] {phase}: innocent {numbers}, failures {self.failures[:5]}")
        return numbers

    def assert_unharmed(self, phase: str) -> None:
        numbers = self.report(phase)
        assert not self.failures, (phase, self.failures[:10])
        assert numbers["reads"] >= 20, numbers
        assert numbers["p99_ms"] < READ_P99_S * 1000, numbers
        assert self.upload_s is not None and self.upload_s < UPLOAD_DEADLINE_S, numbers
