"""The worker survives its database connections being killed mid-run (a Postgres restart or
failover looks like this to a client): the listener reconnects and the job still completes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg

from docingest.domain.states import JobStatus
from docingest.store.db import open_pool
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload


def _kill_other_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def test_connections_killed_mid_run_job_still_completes(dsn: str, tmp_path: Path) -> None:
    rt = make_runtime(dsn, tmp_path, DOCINGEST_EMBED_BATCH_SIZE="4")
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        res = await upload(
            conn, rt, uuid.uuid4(), EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
        )
    await pool.close()

    async def status() -> JobStatus:
        with psycopg.connect(dsn) as c:
            row = c.execute(
                "SELECT status FROM docingest.upload_jobs WHERE job_id = %s", (res.job_id,)
            ).fetchone()
        assert row is not None
        return JobStatus(row[0])

    async def done() -> bool:
        return (await status()).is_terminal

    worker = asyncio.create_task(
        run_worker(rt, concurrency=1, until=done, handle_signals=False, poll_interval_s=0.2)
    )
    # wait until the job is being embedded, then cut every connection the worker holds
    async with asyncio.timeout(60):
        while await status() not in (JobStatus.EMBEDDING_IN_PROGRESS, JobStatus.COMPLETE):
            await asyncio.sleep(0.02)
    killed = _kill_other_backends(dsn)
    async with asyncio.timeout(90):
        await worker
    assert killed >= 1
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT status, (progress->>'chunks_total')::int,"
            " (SELECT count(*) FROM docingest.document_chunks WHERE document_id = j.document_id)"
            " FROM docingest.upload_jobs j WHERE job_id = %s",
            (res.job_id,),
        ).fetchone()
    assert row is not None and row[0] == "complete" and row[1] == row[2] > 0
