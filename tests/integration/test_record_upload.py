"""Recording an upload (document + job + event in one statement, then its wake-up), on a real
Postgres: a new document, the same bytes again, and the same bytes recorded concurrently (the
second statement's snapshot predates the first one's commit); the wake-up's own transaction."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from docingest.bootstrap import Runtime
from docingest.pipeline.ids import document_id_for
from docingest.store import documents, jobs
from docingest.store.db import DictConn, open_pool
from tests.helpers import make_runtime

PDF = b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n"


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[AsyncConnectionPool[DictConn]]:
    pool = await open_pool(dsn, min_size=2, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    return make_runtime(dsn, tmp_path / "home")


async def _stored(rt: Runtime, user: uuid.UUID) -> documents.StoredUpload:
    async def body() -> AsyncIterator[bytes]:
        yield PDF

    return await documents.store_upload(rt.blobs, user_id=user, chunks=body(), max_bytes=10**6)


async def _record(
    pool: AsyncConnectionPool[DictConn], rt: Runtime, stored: documents.StoredUpload
) -> documents.UploadResult:
    user = uuid.UUID(stored.key.split("/")[1])
    return await documents.record_upload(
        pool.connection(), rt.blobs, stored, user_id=user, filename="a.pdf", actor="test"
    )


def _uploads(dsn: str, document_id: uuid.UUID) -> list[tuple[str, uuid.UUID]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT outcome, job_id FROM docingest.events"
            " WHERE action = 'document.upload' AND document_id = %s ORDER BY at, event_id",
            (document_id,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def test_new_then_same_bytes_again(
    dsn: str, rt: Runtime, pool: AsyncConnectionPool[DictConn]
) -> None:
    user = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f'LISTEN "{jobs.CHANNEL}"')
        first = await _record(pool, rt, first_stored := await _stored(rt, user))
        again = await _record(pool, rt, second_stored := await _stored(rt, user))
        async with pool.connection() as conn:  # delivered after everything sent before it
            await conn.execute("SELECT pg_notify(%s, 'end')", (jobs.CHANNEL,))
        payloads = []
        async for notify in listener.notifies(timeout=10):
            if notify.payload == "end":
                break
            payloads.append(notify.payload)
    # one wake-up for the new job, none for the duplicate
    assert payloads == [""]
    assert first.duplicate is False and again.duplicate is True
    assert (again.document_id, again.job_id) == (first.document_id, first.job_id)
    assert first.document_id == document_id_for(user, first_stored.sha256)
    assert _uploads(dsn, first.document_id) == [
        ("created", first.job_id),
        ("duplicate", first.job_id),
    ]
    # the duplicate's blob is gone; the document's is kept
    assert await rt.blobs.exists(first_stored.key)
    assert not await rt.blobs.exists(second_stored.key)


async def test_same_bytes_recorded_concurrently(
    dsn: str, rt: Runtime, pool: AsyncConnectionPool[DictConn]
) -> None:
    """The other upload's insert is held open until ours waits on it: ours then conflicts
    with rows its statement cannot see, and answers with the other upload's job."""
    user = uuid.uuid4()
    other, ours = await _stored(rt, user), await _stored(rt, user)
    document_id = document_id_for(user, ours.sha256)
    other_job = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(dsn) as holder:
        await holder.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, mime, bytes_len,"
            " file_sha256, raw_path) VALUES (%s, %s, 'b.pdf', 'application/pdf', %s, %s, %s)",
            (document_id, user, other.size, other.sha256, other.key),
        )
        await holder.execute(
            "INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path,"
            " correlation_id) VALUES (%s, %s, %s, %s, %s)",
            (other_job, user, document_id, other.key, uuid.uuid4()),
        )
        holder_pid = holder.info.backend_pid
        recording = asyncio.create_task(_record(pool, rt, ours))
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as watcher:
            while not recording.done():  # until our statement waits for the holder's lock
                cur = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (holder_pid,),
                )
                row = await cur.fetchone()
                if row is not None and row[0] > 0:
                    break
                await asyncio.sleep(0.01)
        assert not recording.done(), "the concurrent record did not wait for the other upload"
        await holder.commit()
    result = await recording
    assert (result.duplicate, result.document_id, result.job_id) == (True, document_id, other_job)
    assert _uploads(dsn, document_id) == [("duplicate", other_job)]
    assert not await rt.blobs.exists(ours.key)


async def test_wake_up_is_a_transaction_of_its_own(pool: AsyncConnectionPool[DictConn]) -> None:
    """PostgreSQL commits NOTIFY-ing transactions one at a time, holding a lock through the
    commit's WAL flush: the wake-up never rides in the upload's statement or any transaction."""
    assert "notify" not in documents._RECORD_UPLOAD.lower()
    async with pool.connection() as conn:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            async with conn.transaction():
                await jobs.notify(conn)


async def _assert_recorded_with_blob(dsn: str, rt: Runtime, stored: documents.StoredUpload) -> None:
    """The upload's job committed and its blob is still there."""
    assert await rt.blobs.exists(stored.key)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status FROM docingest.upload_jobs WHERE raw_path = %s", (stored.key,)
        ).fetchone()
    assert row == ("uploaded",)


async def test_an_upload_cancelled_during_its_wake_up_keeps_its_blob(
    dsn: str, rt: Runtime, pool: AsyncConnectionPool[DictConn], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wake-up follows the commit: a failure or cancellation there leaves a recorded
    document, so its blob stays (removing it would orphan the committed row)."""

    async def cancelled(conn: DictConn) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(jobs, "notify", cancelled)
    stored = await _stored(rt, uuid.uuid4())
    with pytest.raises(asyncio.CancelledError):
        await _record(pool, rt, stored)
    await _assert_recorded_with_blob(dsn, rt, stored)


async def test_a_wake_up_lost_with_its_connection_is_logged_not_raised(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The write it announces has committed; the workers' poll finds the job."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.close()
    with caplog.at_level("WARNING", logger="docingest.store.jobs"):
        await jobs.notify(conn)  # type: ignore[arg-type]
    assert [r.__dict__.get("action") for r in caplog.records] == ["notify_error"]


async def test_an_upload_whose_answer_was_lost_keeps_its_blob(
    dsn: str, rt: Runtime, pool: AsyncConnectionPool[DictConn]
) -> None:
    """The statement commits, then its connection fails before the answer arrives (as in a
    PostgreSQL restart): the row may exist, so the blob is kept (`docingest purge` removes it
    if no row names it); a statement the server refused still takes its blob with it."""

    class LostAnswer:
        def __init__(self, conn: DictConn) -> None:
            self.conn = conn

        async def execute(self, query: str, params: object) -> None:
            await self.conn.execute(query, params)  # type: ignore[arg-type]
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    @contextlib.asynccontextmanager
    async def through(wrapper: type[LostAnswer]) -> AsyncIterator[DictConn]:
        async with pool.connection() as conn:
            yield wrapper(conn)  # type: ignore[misc]

    user = uuid.uuid4()
    stored = await _stored(rt, user)
    with pytest.raises(psycopg.OperationalError):
        await documents.record_upload(
            through(LostAnswer), rt.blobs, stored, user_id=user, filename="a.pdf", actor="test"
        )
    await _assert_recorded_with_blob(dsn, rt, stored)

    class Refused(LostAnswer):
        async def execute(self, query: str, params: object) -> None:
            await self.conn.execute("SET statement_timeout = 1")
            try:
                await self.conn.execute("SELECT pg_sleep(1)")  # QueryCanceled: SQLSTATE 57014
            finally:
                await self.conn.execute("RESET statement_timeout")

    other = await _stored(rt, user)
    with pytest.raises(psycopg.errors.QueryCanceled):
        await documents.record_upload(
            through(Refused), rt.blobs, other, user_id=user, filename="b.pdf", actor="test"
        )
    assert not await rt.blobs.exists(other.key)
