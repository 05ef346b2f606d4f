"""The API's /metrics carries queue gauges read from the database on each scrape, and they
move with uploads, claims and waiting time. No ids or names appear as labels."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg

from docingest.bootstrap import Runtime
from docingest.domain.states import JobStatus
from docingest.store.db import open_pool
from tests.conftest import EXAMPLES
from tests.helpers import claim_one, upload
from tests.metrics_scrape import sample

PDF = EXAMPLES / "sbc_uhc_bronze_2026.pdf"


async def scrape(client: httpx.AsyncClient) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return r.text


async def scrape_when(client: httpx.AsyncClient, name: str, value: float, **labels: str) -> str:
    """The first scrape in which `name` has `value`: the queue gauges are read from the
    database at most once a second (api/recent.py), so a change shows within that."""
    deadline = time.monotonic() + 5
    while sample(text := await scrape(client), name, **labels) != value:
        assert time.monotonic() < deadline, f"{name} never became {value}"
        await asyncio.sleep(0.1)
    return text


async def test_queue_gauges_follow_uploads_claims_and_waiting(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    before = await scrape(client)
    for status in JobStatus:
        assert sample(before, "docingest_jobs", status=status.value) == 0
    assert sample(before, "docingest_queue_depth") == 0
    assert sample(before, "docingest_queue_oldest_claimable_age_seconds") == 0
    assert sample(before, "docingest_workers_with_live_lease") == 0

    pool = await open_pool(dsn, min_size=1, max_size=2, name="test")
    try:
        async with pool.connection() as conn:
            first = await upload(conn, rt, uuid.uuid4(), PDF)
            await upload(conn, rt, uuid.uuid4(), PDF)
        with psycopg.connect(dsn, autocommit=True) as conn:  # the first has waited 2 minutes
            conn.execute(
                "UPDATE docingest.upload_jobs SET next_attempt_at = now() - interval '120 s'"
                " WHERE job_id = %s",
                (first.job_id,),
            )
        queued = await scrape_when(client, "docingest_jobs", 2, status="uploaded")
        assert sample(queued, "docingest_queue_depth") == 2
        age = sample(queued, "docingest_queue_oldest_claimable_age_seconds")
        assert age is not None and 120 <= age < 180

        async with pool.connection() as conn:
            claimed = await claim_one(conn, "worker-a", 60)
        assert claimed is not None and claimed.job_id == first.job_id  # most overdue first
        leased = await scrape_when(client, "docingest_workers_with_live_lease", 1)
        assert sample(leased, "docingest_jobs", status="uploaded") == 2  # status unchanged
        assert sample(leased, "docingest_queue_depth") == 1
        young = sample(leased, "docingest_queue_oldest_claimable_age_seconds")
        assert young is not None and young < 60
    finally:
        await pool.close()
    assert str(first.document_id) not in leased and PDF.name not in leased


async def test_metrics_still_served_when_the_database_is_gone(
    client: httpx.AsyncClient, dsn: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:  # the schema vanishes under the app
        conn.execute("DROP SCHEMA docingest CASCADE")
    text = await scrape(client)
    assert sample(text, "docingest_queue_depth") is None
    assert "docingest_api_requests_total" in text
