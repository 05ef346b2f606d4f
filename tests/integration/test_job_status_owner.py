"""One owner of job status (store/jobs.py `_change_status`): a status change and its event
commit together or not at all, whoever makes it (worker, user retry, parse callback), on a
real Postgres that refuses the event row."""

from __future__ import annotations

import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from docingest.domain.states import JobStatus
from docingest.pipeline.parsed_markdown import prepare
from docingest.store import jobs
from docingest.store.db import DictConn, open_pool
from docingest.store.records import Job
from tests.factories import make_job
from tests.helpers import claim_one

Change = Callable[[DictConn, Job], Awaitable[Job | None]]


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[AsyncConnectionPool[DictConn]]:
    pool = await open_pool(dsn, min_size=1, max_size=3)
    yield pool
    await pool.close()


async def _claimed(pool: AsyncConnectionPool[DictConn], status: JobStatus) -> Job:
    """A job claimed by `w1`, moved along the pipeline up to `status` (or failed at parse)."""
    async with pool.connection() as conn:
        await make_job(conn)
        job = await claim_one(conn, "w1", lease_s=300)
        assert job is not None
        if status != JobStatus.UPLOADED:
            job = await jobs.transition(conn, job, "w1", JobStatus.PARSE_QUEUED)
        if status == JobStatus.FAILED_PARSE:
            job = await jobs.fail(conn, job, "w1", "encrypted", "a password is required")
        assert job.status == status
        return job


async def _advance(conn: DictConn, job: Job) -> Job | None:
    return await jobs.transition(conn, job, "w1", JobStatus.PARSE_QUEUED)


async def _fail(conn: DictConn, job: Job) -> Job | None:
    return await jobs.fail(conn, job, "w1", "encrypted", "a password is required")


async def _user_retry(conn: DictConn, job: Job) -> Job | None:
    event = jobs.StatusEvent(actor="user:test", action="job.retry", outcome="accepted")
    return await jobs.retry_failed(conn, job.job_id, event, max_user_retries=3)


async def _callback(conn: DictConn, job: Job) -> Job | None:
    # a parse callback acts only on a job no worker holds
    await jobs.release(conn, job, "w1")
    artifact = prepare(job.document_id, job.job_id, "# Plan\n\nDeductible: $500.", 10_000)
    event = jobs.StatusEvent(actor="webhook:test", detail={"via": "signed_callback"})
    return await jobs.record_parsed(
        conn, job, artifact, parser_name="p", parser_version="1", event=event
    )


@dataclass(frozen=True)
class Case:
    """How the change is made, the status it starts from, the status and action it leads to."""

    change: Change
    src: JobStatus
    dst: JobStatus
    action: str


CASES = {
    "worker_transition": Case(
        _advance, JobStatus.UPLOADED, JobStatus.PARSE_QUEUED, "job.parse_queued"
    ),
    "worker_fail": Case(_fail, JobStatus.PARSE_QUEUED, JobStatus.FAILED_PARSE, "job.failed_parse"),
    "user_retry": Case(_user_retry, JobStatus.FAILED_PARSE, JobStatus.PARSE_QUEUED, "job.retry"),
    "parse_callback": Case(_callback, JobStatus.PARSE_QUEUED, JobStatus.PARSED, "job.parsed"),
}
each_case = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


def _visible(dsn: str, job_id: uuid.UUID) -> tuple[str, list[str]]:
    """The job's status and its events' actions, read on a connection of its own."""
    with psycopg.connect(dsn) as other:
        row = other.execute(
            "SELECT status::text FROM docingest.upload_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
        actions = other.execute(
            "SELECT action FROM docingest.events WHERE job_id = %s ORDER BY event_id",
            (job_id,),
        ).fetchall()
    assert row is not None
    return row[0], [a[0] for a in actions]


@each_case
async def test_status_and_event_commit_together(
    dsn: str, pool: AsyncConnectionPool[DictConn], case: Case
) -> None:
    job = await _claimed(pool, case.src)
    _, before = _visible(dsn, job.job_id)
    async with pool.connection() as conn:
        moved = await case.change(conn, job)
    assert moved is not None and moved.status == case.dst
    status, actions = _visible(dsn, job.job_id)
    assert status == case.dst.value
    assert actions == [*before, case.action]


@each_case
async def test_a_failed_event_write_leaves_the_status_unchanged(
    dsn: str, pool: AsyncConnectionPool[DictConn], case: Case
) -> None:
    job = await _claimed(pool, case.src)
    _, before = _visible(dsn, job.job_id)
    with psycopg.connect(dsn, autocommit=True) as admin:  # the event row is refused
        admin.execute(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'event refused'; END $$"
        )
        admin.execute(
            sql.SQL(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON docingest.events FOR EACH ROW"
                " WHEN (NEW.job_id = {}) EXECUTE FUNCTION pg_temp.refuse()"
            ).format(sql.Literal(str(job.job_id)))
        )
        try:
            with pytest.raises(psycopg.errors.RaiseException):
                async with pool.connection() as conn:
                    await case.change(conn, job)
        finally:
            admin.execute("DROP TRIGGER refuse_event ON docingest.events")
    status, actions = _visible(dsn, job.job_id)
    assert status == case.src.value
    assert actions == before


def test_nothing_else_writes_a_job_status() -> None:
    """`_change_status` is the only UPDATE of `upload_jobs.status` in the package (rows are
    created elsewhere, with their first status, by INSERT)."""
    root = pathlib.Path(jobs.__file__).parents[1]
    writers = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"SET\s+status\s*=", path.read_text(encoding="utf-8"), re.IGNORECASE)
    )
    assert writers == ["store/jobs.py"]
    source = pathlib.Path(jobs.__file__).read_text(encoding="utf-8")
    # every status UPDATE in store/jobs.py is handed to _change_status
    assert len(re.findall(r"SET\s+status\s*=", source)) == source.count("_change_status(") - 1
