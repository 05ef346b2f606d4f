"""Work proportional to what a user may ask for (issue 11): the amplified PDF, too much text
and too many chunks each fail their own job with a named code; claims are fair across users;
a job's retries are budgeted over its whole life; statements have deadlines; worker events
name the worker."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from docingest.bootstrap import Runtime
from docingest.domain.states import JobStatus
from docingest.store import jobs
from docingest.store.db import open_pool
from docingest.testing.pdfgen import make_amplified_pdf, make_pdf
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import auth, claim_one, make_runtime, upload

GLOSSARY = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"


def job_rows(dsn: str) -> dict[uuid.UUID, dict[str, object]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT job_id, status::text AS status, last_error, user_retries"
            " FROM docingest.upload_jobs"
        ).fetchall()
    return {r["job_id"]: r for r in rows}


async def ingest(rt: Runtime, dsn: str, files: dict[str, bytes], tmp: Path) -> dict[str, uuid.UUID]:
    user = uuid.uuid4()
    ids = {}
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            for name, data in files.items():
                path = tmp / name
                path.write_bytes(data)
                ids[name] = (await upload(conn, rt, user, path)).job_id
    finally:
        await pool.close()
    await run_worker(rt, concurrency=2, once=True, handle_signals=False)
    return ids


async def test_amplified_text_and_chunk_floods_fail_their_own_job(dsn: str, tmp_path: Path) -> None:
    rt = make_runtime(
        dsn, tmp_path / "home", DOCINGEST_MAX_PAGE_CHARS="2000", DOCINGEST_MAX_CHUNKS="3"
    )
    ids = await ingest(
        rt,
        dsn,
        {
            "amplified.pdf": make_amplified_pdf(),  # 3.6 KB drawing 8 million characters a page
            "dense.pdf": make_pdf(1, pages=1, lines_per_page=60),  # ~4,000 characters on a page
            "long.pdf": make_pdf(2, pages=6, lines_per_page=20),  # fits per page; > 3 chunks
            "small.pdf": make_pdf(3, pages=1, lines_per_page=12),  # within every cap
        },
        tmp_path,
    )
    rows = job_rows(dsn)
    outcome = {
        name: (rows[i]["status"], (rows[i]["last_error"] or {}).get("code"))  # type: ignore[union-attr]
        for name, i in ids.items()
    }
    assert outcome == {
        "amplified.pdf": ("failed_parse", "decompression_bomb"),
        "dense.pdf": ("failed_parse", "text_limit"),
        "long.pdf": ("failed_chunking", "too_many_chunks"),
        "small.pdf": ("complete", None),
    }


def _queue_backlogs(dsn: str) -> tuple[uuid.UUID, uuid.UUID]:
    """User A: 6 jobs queued 10 min ago; user B: 1 job queued 1 s ago. Their ids."""
    a, b = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for user, n, age in ((a, 6, "10 min"), (b, 1, "1 s")):  # A's backlog is older
            for _ in range(n):
                doc = uuid.uuid4()
                conn.execute(
                    "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
                    " file_sha256, raw_path) VALUES (%s, %s, 'x.pdf', 1, %s, 'raw/x')",
                    (doc, user, uuid.uuid4().hex * 2),
                )
                conn.execute(
                    "INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path,"
                    " correlation_id, next_attempt_at) VALUES (%s, %s, %s, 'raw/x', %s,"
                    " now() - %s::interval)",
                    (uuid.uuid4(), user, doc, uuid.uuid4(), age),
                )
    return a, b


async def test_claims_are_fair_across_users(dsn: str) -> None:
    a, _ = _queue_backlogs(dsn)
    pool = await open_pool(dsn, max_size=1)
    try:
        order = []
        async with pool.connection() as conn:
            for i in range(4):
                job = await claim_one(conn, f"w{i}", 60)
                assert job is not None
                order.append("A" if job.user_id == a else "B")
    finally:
        await pool.close()
    # A's oldest first (nobody runs anything), then B's only job before A's second
    assert order == ["A", "B", "A", "A"]


async def test_one_claim_for_several_slots_takes_them_in_fair_order(dsn: str) -> None:
    a, _ = _queue_backlogs(dsn)
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            two = await jobs.claim_many(conn, "w0", 60, limit=2)
            rest = await jobs.claim_many(conn, "w1", 60, limit=16)
            none = await jobs.claim_many(conn, "w2", 60, limit=2)
    finally:
        await pool.close()
    # B's only job is among the first two although A's backlog is older; then the rest of
    # A's, a short answer (5 of 16), then an empty one
    assert sorted("A" if j.user_id == a else "B" for j in two) == ["A", "B"]
    assert [j.user_id for j in rest] == [a] * 5 and none == []
    assert {j.claimed_by for j in two} == {"w0"} and {j.attempt for j in two + rest} == {1}


async def test_user_retries_are_budgeted_over_the_jobs_life(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    user = uuid.uuid4()
    files = {"file": ("a.pdf", GLOSSARY.read_bytes(), "application/pdf")}
    up = (await client.post("/v1/documents", files=files, headers=auth(rt, user))).json()
    statuses = []
    for _ in range(rt.settings.work.max_user_retries + 2):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE docingest.upload_jobs SET status = 'failed_parse',"
                " resume_status = 'parse_queued' WHERE job_id = %s",
                (up["job_id"],),
            )
        r = await client.post(f"/v1/jobs/{up['job_id']}/retry", headers=auth(rt, user))
        statuses.append((r.status_code, r.json().get("error", {}).get("code")))
    budget = rt.settings.work.max_user_retries
    assert statuses == [(202, None)] * budget + [(409, "retry_limit")] * 2
    assert job_rows(dsn)[uuid.UUID(up["job_id"])]["user_retries"] == budget


async def test_statements_have_a_deadline(dsn: str) -> None:
    pool = await open_pool(dsn, max_size=1, statement_timeout_s=0.2)
    try:
        async with pool.connection() as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                await conn.execute("SELECT pg_sleep(2)")
            cur = await conn.execute("SHOW idle_in_transaction_session_timeout")
            assert (await cur.fetchone()) == {"idle_in_transaction_session_timeout": "200ms"}
    finally:
        await pool.close()


async def test_worker_events_name_the_worker(dsn: str, tmp_path: Path) -> None:
    rt = make_runtime(dsn, tmp_path / "home")
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
    finally:
        await pool.close()
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    with psycopg.connect(dsn) as conn:
        actors = conn.execute(
            "SELECT DISTINCT actor FROM docingest.events WHERE job_id = %s AND action LIKE 'job.%%'",
            (res.job_id,),
        ).fetchall()
        status = conn.execute(
            "SELECT status::text FROM docingest.upload_jobs WHERE job_id = %s", (res.job_id,)
        ).fetchone()
    assert status == (JobStatus.COMPLETE.value,)
    assert len(actors) == 1 and actors[0][0].startswith("worker:")
    assert actors[0][0] != "worker:None"
