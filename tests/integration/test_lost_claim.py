"""A claim that committed but whose answer was lost (PostgreSQL restarted at that moment)
must not leave its job held for the whole lease: the worker, alive and unaware of the job,
gives back what it holds but does not run as soon as the database answers again."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from docingest.store import jobs
from docingest.store.db import open_pool
from docingest.store.records import Job
from docingest.testing.pdfgen import make_pdf
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload

LEASE_S = 60  # the default lease: the job must complete long before it could run out


def _job_row(dsn: str, job_id: uuid.UUID) -> tuple[str, str | None]:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT status::text, claimed_by FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


async def test_a_job_whose_claim_answer_was_lost_completes_long_before_its_lease(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime(dsn, tmp_path / "home", DOCINGEST_EMBEDDER="hash")
    assert rt.settings.lease_seconds == LEASE_S
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            uploaded = await upload(conn, rt, uuid.uuid4(), EXAMPLES / "sbc_uhc_bronze_2026.pdf")
    finally:
        await pool.close()
    real_claim = jobs.claim_many
    lost: list[Job] = []

    async def claim_then_lose_the_answer(*args: Any, **kwargs: Any) -> list[Job]:
        found = await real_claim(*args, **kwargs)
        if found and not lost:
            lost.extend(found)  # committed in the database; the worker never hears of it
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return found

    monkeypatch.setattr(jobs, "claim_many", claim_then_lose_the_answer)

    async def complete() -> bool:
        return _job_row(dsn, uploaded.job_id)[0] == "complete"

    started = time.monotonic()
    processed = await asyncio.wait_for(
        run_worker(rt, concurrency=2, until=complete, handle_signals=False), LEASE_S / 3
    )
    assert processed == 1
    assert [j.job_id for j in lost] == [uploaded.job_id]
    assert time.monotonic() - started < LEASE_S / 3
    assert _job_row(dsn, uploaded.job_id) == ("complete", None)


async def test_release_unknown_gives_back_only_what_the_worker_does_not_run(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path / "home")
    states = [("uploaded", "me"), ("parsed", "me"), ("complete", "me"), ("uploaded", "other")]
    pool = await open_pool(dsn)
    try:
        job_ids = []
        for seed, (status, holder) in enumerate(states):
            pdf = tmp_path / f"{seed}.pdf"
            pdf.write_bytes(make_pdf(seed, pages=1))
            async with pool.connection() as conn:
                job_id = (await upload(conn, rt, uuid.uuid4(), pdf)).job_id
                await conn.execute(
                    "UPDATE docingest.upload_jobs SET status = %s, claimed_by = %s,"
                    " lease_expires_at = now() + interval '60 s' WHERE job_id = %s",
                    (status, holder, job_id),
                )
            job_ids.append(job_id)
        running, lost, done, others = job_ids
        async with pool.connection() as listener:
            await listener.execute(f"LISTEN {jobs.CHANNEL}")
            async with pool.connection() as conn:
                assert await jobs.release_unknown(conn, "me", {running}) == 1
            notes = listener.notifies(timeout=5, stop_after=1)
            assert len([n async for n in notes]) == 1
    finally:
        await pool.close()
    holders = {j: _job_row(dsn, j)[1] for j in job_ids}
    assert holders == {running: "me", lost: None, done: "me", others: "other"}
