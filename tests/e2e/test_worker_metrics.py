"""`docingest worker --metrics-port` serves the worker's Prometheus metrics over HTTP, and
they count the job it finishes; `docingest up --worker-metrics-base-port` gives each worker
its own port, kept when a dead worker is restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx

from docingest.store.db import open_pool
from docingest.testing.procs import free_port, run_process, wait_http_ok
from tests.conftest import EXAMPLES
from tests.e2e.conftest import stack_env
from tests.helpers import make_runtime, upload
from tests.metrics_scrape import sample

PDF = EXAMPLES / "sbc_uhc_bronze_2026.pdf"


async def _upload_one(dsn: str, home: Path) -> None:
    rt = make_runtime(dsn, home)
    pool = await open_pool(dsn, min_size=1, max_size=1, name="test")
    try:
        async with pool.connection() as conn:
            await upload(conn, rt, uuid.uuid4(), PDF)
    finally:
        await pool.close()


def test_worker_metrics_are_scrapeable_and_count_finished_jobs(dsn: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    asyncio.run(_upload_one(dsn, home))  # also creates the master key the worker reads
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = stack_env(dsn, home, DOCINGEST_WORKER_METRICS_PORT=str(port))
    args = [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"]
    with run_process(args, env=env, ready_url=url, timeout_s=60):
        deadline = time.monotonic() + 120
        done = None
        while done != 1 and time.monotonic() < deadline:
            text = httpx.get(url, timeout=5).text
            done = sample(text, "docingest_worker_jobs_finished_total", status="complete")
            time.sleep(0.2)  # poll interval; the condition is the scraped counter
        assert done == 1, "the worker's /metrics never counted the completed job"
        assert sample(text, "docingest_worker_jobs_claimed_total") == 1
        assert (sample(text, "docingest_worker_stage_seconds_count") or 0) >= 1
        assert PDF.name not in text


def _two_free_ports() -> int:
    """A port P with P and P + 1 both free a moment ago."""
    for _ in range(20):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _poll(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)  # poll interval; the condition is the predicate
    raise TimeoutError(what)


def test_up_gives_each_worker_a_metrics_port_kept_across_restarts(dsn: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    api_port, metrics_base = free_port(), _two_free_ports()
    urls = [f"http://127.0.0.1:{metrics_base + i}/metrics" for i in range(2)]
    args = [sys.executable, "-m", "docingest", "up", "--workers", "2", "--concurrency", "1"]
    args += ["--port", str(api_port), "--worker-metrics-base-port", str(metrics_base)]
    api = f"http://127.0.0.1:{api_port}"
    with run_process(args, env=stack_env(dsn, home), ready_url=f"{api}/readyz", timeout_s=60):
        for url in urls:  # two listeners, one per worker process (each binds one port)
            wait_http_ok(url, 60)
            assert (
                sample(httpx.get(url, timeout=5).text, "docingest_worker_jobs_claimed_total") == 0
            )
        pids = home / "up.json"
        first = json.loads(pids.read_text())["worker-0"]
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            pid = json.loads(pids.read_text())["worker-0"]
            if pid == first:
                return False
            try:
                return httpx.get(urls[0], timeout=2).is_success
            except httpx.TransportError:
                return False

        _poll(restarted, 60, "worker-0 was not restarted on its metrics port")
        # a fresh process: its counters start again from zero
        text = httpx.get(urls[0], timeout=5).text
        assert sample(text, "docingest_worker_jobs_claimed_total") == 0
