"""A worker asks the queue for work only when something may have arrived: after a claim that
found less than it asked for, a slot freeing (a job entering embedding or ending) does not
claim again; the NOTIFY of the next upload does, at once, not at the poll, with one
statement for all its free slots."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from docingest.bootstrap import Runtime
from docingest.store import jobs
from docingest.store.db import DictConn, open_pool
from docingest.store.records import Job
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload

POLL_S = 600.0  # far beyond the test's deadline: nothing here may be found by the poll
DEADLINE_S = 60.0


def _status(dsn: str, job_id: uuid.UUID) -> str | None:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT status::text FROM docingest.upload_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    return None if row is None else str(row[0])


def _listening(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        ).fetchone()
    return row is not None and int(row[0]) > 0


async def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_drained_worker_claims_only_when_told(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt: Runtime = make_runtime(dsn, tmp_path / "home", DOCINGEST_EMBEDDER="hash")
    found: list[tuple[int, int]] = []  # one entry per claim: (jobs asked for, jobs got)
    real_claim = jobs.claim_many

    async def counting_claim(conn: DictConn, *args: object, limit: int) -> list[Job]:
        got = await real_claim(conn, *args, limit=limit)  # type: ignore[arg-type]
        found.append((limit, len(got)))
        return got

    monkeypatch.setattr(jobs, "claim_many", counting_claim)
    job_ids: list[uuid.UUID] = []

    async def both_complete() -> bool:
        return len(job_ids) == 2 and all(_status(dsn, j) == "complete" for j in job_ids)

    worker = asyncio.create_task(
        run_worker(
            rt, concurrency=2, poll_interval_s=POLL_S, until=both_complete, handle_signals=False
        )
    )
    pool = await open_pool(dsn)
    try:
        await _until(lambda: found and _listening(dsn), "the worker to drain and listen")
        user = uuid.uuid4()
        for n, pdf in enumerate(sorted(EXAMPLES.glob("*.pdf"))[:2]):
            before = len(found)
            async with pool.connection() as conn:
                job_ids.append((await upload(conn, rt, user, pdf)).job_id)
            await _until(lambda: _status(dsn, job_ids[-1]) == "complete", f"document {n}")
            # the upload's NOTIFY: one claim for both free slots, which got the one job and
            # so knew the queue empty; the job leaving its slot for embedding and then ending
            # asked nothing
            assert found[before:] == [(2, 1)]
        assert await asyncio.wait_for(worker, DEADLINE_S) == 2
    finally:
        worker.cancel()
        await pool.close()
