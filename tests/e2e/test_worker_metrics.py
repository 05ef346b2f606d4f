"""`docingest worker --metrics-port` serves the worker's Prometheus metrics over HTTP, and
they count the job it finishes."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx

from docingest.store.db import open_pool
from docingest.testing.procs import free_port, run_process
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
