"""The worker and a database that goes away while a job is provably mid-embedding (the
embedder call is held open until the fault is in place):

- every connection cut (a Postgres restart or failover looks like this to a client): the
  listener and the worker's session reconnect and the job still completes;
- the database refusing connections across the moment the job must be handed back: the
  hand-back is kept and written as soon as connections are allowed again, long before the
  60 s lease would have freed the job."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from docingest.bootstrap import parser
from docingest.clients.embedders import Embedded, HashEmbedder
from docingest.domain.states import JobStatus
from docingest.store.db import open_pool
from docingest.worker.base import BaseWorker, WorkerOptions
from docingest.worker.context import StageContext
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload

PDF = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"


class GatedEmbedder(HashEmbedder):
    """The hash embedder; its first call signals `entered` and waits for `proceed`."""

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self.entered = asyncio.Event()
        self.proceed = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if not self.entered.is_set():
            self.entered.set()
            await self.proceed.wait()
        return await super().embed(texts)


def _status(dsn: str, job_id: uuid.UUID) -> tuple[JobStatus, str | None]:
    with psycopg.connect(dsn) as c:
        return _status_on(c, job_id)


def _status_on(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> tuple[JobStatus, str | None]:
    row = conn.execute(
        "SELECT status, claimed_by FROM docingest.upload_jobs WHERE job_id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return JobStatus(row[0]), row[1]


def _kill_other_backends(dsn: str, spare: int = 0) -> int:
    """Terminate every session of the test database but `spare` (a backend pid)."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> %s",
            (name, spare),
        ).fetchall()
    return len(rows)


def _allow_connections(dsn: str, allow: bool) -> None:
    """Let new sessions into the test database or refuse them (existing ones stay)."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.Literal(allow)
            )
        )


def _assert_complete(dsn: str, job_id: uuid.UUID) -> None:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT status, (progress->>'chunks_total')::int,"
            " (SELECT count(*) FROM docingest.document_chunks WHERE document_id = j.document_id)"
            " FROM docingest.upload_jobs j WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    with psycopg.connect(dsn) as c:
        dbg = c.execute(
            "SELECT last_error, retry_count, attempt FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None and row[0] == "complete" and row[1] == row[2] > 0, dbg


async def test_connections_killed_mid_embedding_job_still_completes(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path, DOCINGEST_EMBED_BATCH_SIZE="4")
    gated = GatedEmbedder(rt.embedder.dimensions)
    rt = dataclasses.replace(rt, embedder=gated)
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        res = await upload(conn, rt, uuid.uuid4(), PDF)
    await pool.close()

    async def done() -> bool:
        return _status(dsn, res.job_id)[0].is_terminal

    worker = asyncio.create_task(
        run_worker(rt, concurrency=1, until=done, handle_signals=False, poll_interval_s=0.2)
    )
    async with asyncio.timeout(60):
        await gated.entered.wait()  # the first embedding request is in flight
    at_fault = _status(dsn, res.job_id)
    killed = _kill_other_backends(dsn)
    gated.proceed.set()
    async with asyncio.timeout(90):
        await worker
    assert at_fault[0] == JobStatus.EMBEDDING_IN_PROGRESS and at_fault[1] is not None
    assert killed >= 3  # the pool's, the listener's and the worker session's connections
    _assert_complete(dsn, res.job_id)


async def test_a_hand_back_refused_by_the_database_lands_when_it_is_back(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path)
    gated = GatedEmbedder(rt.embedder.dimensions)
    pool = await open_pool(dsn, max_size=4, timeout=2)  # give up on a connection quickly
    async with pool.connection() as conn:
        res = await upload(conn, rt, uuid.uuid4(), PDF)
    ctx = StageContext(
        pool=pool, blobs=rt.blobs, parser=parser(rt.settings), embedder=gated, worker_id="w1"
    )
    worker = BaseWorker(ctx, dsn=dsn, options=WorkerOptions(concurrency=1, poll_interval_s=0.2))

    async def done() -> bool:
        return _status(dsn, res.job_id)[0].is_terminal

    running = asyncio.create_task(worker.run(until=done))
    observer = psycopg.connect(dsn, autocommit=True)  # stays in while new sessions are refused
    try:
        async with asyncio.timeout(60):
            await gated.entered.wait()
        assert _status_on(observer, res.job_id) == (JobStatus.EMBEDDING_IN_PROGRESS, "w1")
        _allow_connections(dsn, False)
        _kill_other_backends(dsn, spare=observer.info.backend_pid)
        gated.proceed.set()  # the vectors cannot be stored, nor can the job be handed back
        async with asyncio.timeout(30):
            while not len(worker.handbacks):
                await asyncio.sleep(0.05)
        assert _status_on(observer, res.job_id) == (JobStatus.EMBEDDING_IN_PROGRESS, "w1")
        _allow_connections(dsn, True)
        back = time.monotonic()
        async with asyncio.timeout(30):
            while _status_on(observer, res.job_id)[1] == "w1":
                await asyncio.sleep(0.05)
        released_s = time.monotonic() - back
        async with asyncio.timeout(60):
            await running
    finally:
        observer.close()
        _allow_connections(dsn, True)
        gated.proceed.set()
        if not running.done():
            worker.request_stop()
            await running
        await pool.close()
    assert released_s < 10  # written within seconds, not after the 60 s lease
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT retry_count, attempt FROM docingest.upload_jobs WHERE job_id = %s",
            (res.job_id,),
        ).fetchone()
    assert row is not None and row[1] == 2  # released once, claimed again, then finished
    _assert_complete(dsn, res.job_id)
