"""Dead-worker detection on a real Postgres: a job whose holder's session has ended is
claimable at once, long before its lease runs out; a live holder keeps it; a holder that
never registered (an older build) is judged by its lease only; all of it under the
least-privileged worker role."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from docingest.bootstrap import parser
from docingest.clients.embedders import Embedded, HashEmbedder
from docingest.domain.states import JobStatus
from docingest.store import jobs, liveness
from docingest.store.db import DictConn, open_pool
from docingest.store.records import Job
from docingest.worker.base import BaseWorker, WorkerOptions
from docingest.worker.context import StageContext
from tests.conftest import EXAMPLES
from tests.factories import make_job
from tests.helpers import claim_one, login_role_dsns, make_runtime, upload, wait_past_restart_grace

LONG_LEASE_S = 600.0  # no test here may pass by waiting for a lease


async def _connect(dsn: str) -> DictConn:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)


@pytest.fixture
async def owner(dsn: str) -> AsyncIterator[DictConn]:
    conn = await _connect(dsn)
    yield conn
    await conn.close()


async def _claim_within(conn: DictConn, worker: str, seconds: float) -> Job:
    """Claim as soon as something is claimable (the server ends a closed session's backend,
    and so frees its lock, a moment after the client hangs up)."""
    async with asyncio.timeout(seconds):
        while (job := await claim_one(conn, worker, LONG_LEASE_S)) is None:
            await asyncio.sleep(0.01)  # poll interval; the condition is the claim itself
    return job


async def _takeover_after_session_ends(owner: DictConn, worker_dsn: str) -> None:
    job = await make_job(owner)
    session = await _connect(worker_dsn)  # worker A's proof of life
    claimer = await _connect(worker_dsn)
    try:
        await liveness.register(session, "worker-a")
        held = await claim_one(claimer, "worker-a", LONG_LEASE_S)
        assert held is not None and held.job_id == job.job_id
        assert await claim_one(claimer, "worker-b", LONG_LEASE_S) is None  # A is alive
        assert await liveness.dead_workers(claimer) == []

        await session.close()  # A's process dies: its session ends, the lock goes with it

        taken = await _claim_within(claimer, "worker-b", seconds=5)
        assert taken.job_id == job.job_id
        assert taken.attempt == held.attempt + 1
        assert taken.retry_count == held.retry_count + 1  # a crash counts against the budget
        assert await liveness.dead_workers(claimer) == ["worker-a"]
        with pytest.raises(jobs.LeaseLost):  # A's writes are fenced off
            await jobs.transition(claimer, held, "worker-a", JobStatus.PARSE_QUEUED)
    finally:
        await session.close()
        await claimer.close()


async def test_a_dead_holders_job_is_claimable_at_once(dsn: str, owner: DictConn) -> None:
    wait_past_restart_grace(dsn)
    await _takeover_after_session_ends(owner, dsn)


async def test_takeover_works_under_the_restricted_worker_role(dsn: str, owner: DictConn) -> None:
    wait_past_restart_grace(dsn)
    with login_role_dsns(dsn) as roles:
        await _takeover_after_session_ends(owner, roles["docingest_worker"])


async def test_an_unregistered_holder_keeps_its_job_until_the_lease_runs_out(
    dsn: str, owner: DictConn
) -> None:
    """A worker of an older build holds no session lock: only its lease counts."""
    wait_past_restart_grace(dsn)
    job = await make_job(owner)
    held = await claim_one(owner, "old-build-worker", LONG_LEASE_S)
    assert held is not None and held.job_id == job.job_id
    assert await claim_one(owner, "worker-b", LONG_LEASE_S) is None
    await owner.execute(
        "UPDATE docingest.upload_jobs SET lease_expires_at = now() - interval '1 s'"
        " WHERE job_id = %s",
        (job.job_id,),
    )
    taken = await claim_one(owner, "worker-b", LONG_LEASE_S)
    assert taken is not None and taken.job_id == job.job_id


async def test_a_worker_whose_session_is_gone_claims_nothing(dsn: str, owner: DictConn) -> None:
    """Between losing its session and noticing it, a worker must not claim: the job would be
    orphaned at once, and its own in-flight job would be taken back, spending its retries."""
    wait_past_restart_grace(dsn)
    await make_job(owner)
    session = await _connect(dsn)
    await liveness.register(session, "worker-a")
    await session.close()
    async with asyncio.timeout(5):  # the server ends the backend a moment after the hang-up
        while await liveness.dead_workers(owner) != ["worker-a"]:
            await asyncio.sleep(0.01)
    assert await claim_one(owner, "worker-a", LONG_LEASE_S) is None
    assert await claim_one(owner, "worker-b", LONG_LEASE_S) is not None


async def test_registration_forgets_dead_workers_without_jobs_only(
    dsn: str, owner: DictConn
) -> None:
    wait_past_restart_grace(dsn)
    await make_job(owner)
    idle, busy = await _connect(dsn), await _connect(dsn)
    await liveness.register(idle, "dead-idle")
    await liveness.register(busy, "dead-busy")
    assert await claim_one(owner, "dead-busy", LONG_LEASE_S) is not None
    await idle.close()
    await busy.close()
    fresh = await _connect(dsn)
    try:
        await liveness.register(fresh, "fresh")
        cur = await owner.execute("SELECT worker_id FROM docingest.worker_sessions ORDER BY 1")
        # the busy one stays registered, so its job stays recognisably orphaned
        assert [r["worker_id"] for r in await cur.fetchall()] == ["dead-busy", "fresh"]
        assert await liveness.dead_workers(owner) == ["dead-busy"]
    finally:
        await fresh.close()


class SlowEmbedder(HashEmbedder):
    """The hash embedder, taking `seconds` per call: a slow provider."""

    def __init__(self, dimensions: int, seconds: float) -> None:
        super().__init__(dimensions)
        self.seconds = seconds

    async def embed(self, texts: Sequence[str]) -> Embedded:
        await asyncio.sleep(self.seconds)
        return await super().embed(texts)


async def test_a_slow_but_live_worker_keeps_its_lease(dsn: str, tmp_path: Path) -> None:
    """One embedding call lasts over two leases; the holder heartbeats, its session is alive,
    and a second, idle worker polling all along never takes the job."""
    wait_past_restart_grace(dsn)
    lease_s = 3.0
    rt = make_runtime(dsn, tmp_path)
    pool = await open_pool(dsn, max_size=6)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), EXAMPLES / "sbc_uhc_bronze_2026.pdf")
        base = StageContext(
            pool=pool,
            blobs=rt.blobs,
            parser=parser(rt.settings),
            embedder=SlowEmbedder(rt.embedder.dimensions, seconds=2.5 * lease_s),
            worker_id="",
        )
        options = WorkerOptions(concurrency=1, lease_seconds=lease_s, poll_interval_s=0.2)

        async def finished() -> bool:
            async with pool.connection() as conn:
                job = await jobs.get(conn, res.job_id)
            return job is not None and job.status.is_terminal

        first = BaseWorker(dataclasses.replace(base, worker_id="slow"), dsn=dsn, options=options)
        second = BaseWorker(dataclasses.replace(base, worker_id="idle"), dsn=dsn, options=options)
        one = asyncio.create_task(first.run(until=finished))
        async with asyncio.timeout(60):
            while True:  # the slow worker holds the job before the idle one starts polling
                async with pool.connection() as conn:
                    job = await jobs.get(conn, res.job_id)
                if job is not None and job.claimed_by == "slow":
                    break
                await asyncio.sleep(0.05)
            two = asyncio.create_task(second.run(until=finished))
            await asyncio.gather(one, two)
        async with pool.connection() as conn:
            done = await jobs.get(conn, res.job_id)
    finally:
        await pool.close()
    assert done is not None and done.status == JobStatus.COMPLETE
    assert done.attempt == 1 and done.retry_count == 0  # claimed once, never taken over
    assert (first.processed, second.processed) == (1, 0)
