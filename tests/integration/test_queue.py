"""The job table as a queue, on a real Postgres: claims, leases, fencing, retries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from docingest.domain.states import JobStatus
from docingest.store import jobs
from docingest.store.db import DictConn, open_pool
from docingest.store.jobs import LeaseLost
from docingest.store.statuses import TERMINAL_SQL
from tests.factories import make_job
from tests.helpers import claim_one


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[AsyncConnectionPool[DictConn]]:
    pool = await open_pool(dsn, min_size=4, max_size=6)
    yield pool
    await pool.close()


async def test_enum_matches_postgres(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT unnest(enum_range(NULL::docingest.job_status))::text"
        ).fetchall()
    assert [r[0] for r in rows] == [s.value for s in JobStatus]


@pytest.mark.parametrize("per_claim", [1, 3])
async def test_four_claimers_never_claim_one_job_twice(
    pool: AsyncConnectionPool[DictConn], per_claim: int
) -> None:
    async with pool.connection() as conn:
        created = {(await make_job(conn)).job_id for _ in range(200)}

    async def claimer(name: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        async with pool.connection() as conn:
            while found := await jobs.claim_many(conn, name, 300, limit=per_claim):
                assert len(found) <= per_claim
                got.extend(job.job_id for job in found)
                await asyncio.sleep(0)  # let the other claimers interleave
        return got

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
    claimed = [j for r in results for j in r]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == created
    assert sum(1 for r in results if r) >= 2, "claims should be spread over several claimers"


async def test_expired_lease_goes_to_another_worker_and_fences_the_first(
    pool: AsyncConnectionPool[DictConn],
) -> None:
    async with pool.connection() as conn:
        await make_job(conn)
        first = await claim_one(conn, "w1", lease_s=300)
        assert first is not None
        assert await claim_one(conn, "w2", lease_s=300) is None  # lease still valid
        # time passes: the lease runs out (set directly instead of waiting)
        await conn.execute(
            "UPDATE docingest.upload_jobs SET lease_expires_at = now() - interval '1 second'"
            " WHERE job_id = %s",
            (first.job_id,),
        )
        second = await claim_one(conn, "w2", lease_s=300)
        assert second is not None and second.job_id == first.job_id
        assert second.attempt == first.attempt + 1
        assert second.retry_count == first.retry_count + 1  # an abandoned claim counts
        with pytest.raises(LeaseLost):
            await jobs.transition(conn, first, "w1", JobStatus.PARSE_QUEUED)
        assert not await jobs.heartbeat(conn, first, "w1", 300)
        moved = await jobs.transition(conn, second, "w2", JobStatus.PARSE_QUEUED)
        assert moved.status == JobStatus.PARSE_QUEUED


async def test_status_does_not_advance_when_its_write_fails(
    pool: AsyncConnectionPool[DictConn],
) -> None:
    async with pool.connection() as conn:
        await make_job(conn)
        job = await claim_one(conn, "w1", lease_s=300)
        assert job is not None
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            async with conn.transaction():
                await jobs.transition(conn, job, "w1", JobStatus.PARSE_QUEUED)
                # the write that should justify the status fails
                await conn.execute(
                    "INSERT INTO docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord,"
                    " chunker_name, chunker_version, chunk_sha, text) VALUES (%s, %s, 0, 'm', '1', 's', 't')",
                    (uuid.uuid4(), uuid.uuid4()),
                )
        after = await jobs.get(conn, job.job_id)
        assert after is not None and after.status == JobStatus.UPLOADED


async def test_release_with_backoff_hides_job_until_due(
    pool: AsyncConnectionPool[DictConn],
) -> None:
    async with pool.connection() as conn:
        await make_job(conn)
        job = await claim_one(conn, "w1", lease_s=300)
        assert job is not None
        assert await jobs.release(
            conn, job, "w1", delay_s=3600, error={"code": "x", "message": "y"}
        )
        assert await claim_one(conn, "w2", lease_s=300) is None
        await conn.execute("UPDATE docingest.upload_jobs SET next_attempt_at = now()")
        again = await claim_one(conn, "w2", lease_s=300)
        assert again is not None and again.retry_count == 1
        assert again.last_error == {"code": "x", "message": "y"}


async def test_fail_then_retry_resumes_from_the_failed_stage(
    pool: AsyncConnectionPool[DictConn],
) -> None:
    async with pool.connection() as conn:
        await make_job(conn)
        job = await claim_one(conn, "w1", lease_s=300)
        assert job is not None
        job = await jobs.transition(conn, job, "w1", JobStatus.PARSE_QUEUED)
        failed = await jobs.fail(conn, job, "w1", "encrypted", "a password is required")
        assert failed.status == JobStatus.FAILED_PARSE
        assert failed.claimed_by is None
        assert await claim_one(conn, "w2", lease_s=300) is None  # terminal: not claimable
        retried = await jobs.retry_failed(conn, job.job_id, jobs.StatusEvent(actor="test"))
        assert retried is not None and retried.status == JobStatus.PARSE_QUEUED
        assert retried.last_error is None and retried.retry_count == 0
        assert (
            await jobs.retry_failed(conn, job.job_id, jobs.StatusEvent(actor="test")) is None
        )  # not failed any more


async def test_claim_uses_the_partial_index(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN SELECT job_id FROM docingest.upload_jobs"
            f" WHERE status NOT IN {TERMINAL_SQL}"
            " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1"
        ).fetchall()
    assert "upload_jobs_claimable" in "\n".join(r[0] for r in plan)
