"""Documents: upload acceptance (dedupe per user on the file hash), reads, deletion."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from docingest.domain.errors import DocingestError, ErrorCode
from docingest.domain.states import JobStatus
from docingest.pipeline.ids import document_id_for
from docingest.pipeline.parsed_markdown import job_prefix
from docingest.store import events, jobs
from docingest.store.blobs import BlobStore, delete_prefix
from docingest.store.db import DictConn
from docingest.store.records import Document, Job

PDF_MAGIC = b"%PDF-"
HEADER_WINDOW = 1024


class UploadRefused(DocingestError):
    """The upload is not accepted (not a PDF, empty, too large). Maps to a 4xx."""


@dataclass(frozen=True)
class UploadResult:
    document_id: UUID
    job_id: UUID
    status: JobStatus
    duplicate: bool


async def _sniff_pdf(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass bytes through, refusing the stream unless `%PDF-` starts within the first 1,024
    bytes (as PDF readers allow). Nothing past the window is read before the check."""
    head = b""
    checked = False
    async for chunk in chunks:
        if checked:
            yield chunk
            continue
        head += chunk
        if len(head) >= HEADER_WINDOW + len(PDF_MAGIC) - 1:
            _check_header(head)
            checked = True
            yield head
    if not checked:
        if not head:
            raise UploadRefused(ErrorCode.EMPTY_FILE, "the uploaded file is empty")
        _check_header(head)
        yield head


def _check_header(head: bytes) -> None:
    pos = head.find(PDF_MAGIC, 0, HEADER_WINDOW + len(PDF_MAGIC) - 1)
    if pos < 0:
        raise UploadRefused(
            ErrorCode.NOT_PDF, "not a PDF: no %PDF- header within the first 1024 bytes"
        )


@dataclass(frozen=True)
class StoredUpload:
    """An upload's encrypted blob, written but not yet recorded."""

    key: str
    sha256: str
    size: int


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_FILENAME_CHARS = 255


def clean_filename(raw: str) -> str:
    """The client's filename as stored: control characters (NUL included, which Postgres text
    cannot hold) dropped, at most 255 characters, never empty."""
    name = _UNPRINTABLE.sub("", raw).strip()[:MAX_FILENAME_CHARS]
    return name or "upload.pdf"


async def store_upload(
    blobs: BlobStore,
    *,
    user_id: UUID,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    expected_sha256: str | None = None,
) -> StoredUpload:
    """Stream an upload into the encrypted blob store; no database connection is held.

    `expected_sha256` (lowercase hex, the client's `Content-SHA256`): the hash is known only
    once the blob is written, so on a mismatch the blob is removed and nothing is recorded."""
    key = f"raw/{user_id}/{uuid4()}.pdf.enc"
    info = await blobs.put_stream(key, _sniff_pdf(chunks), max_bytes=max_bytes)
    if expected_sha256 is not None and info.sha256 != expected_sha256:
        await blobs.delete(key)
        raise UploadRefused(
            ErrorCode.CHECKSUM_MISMATCH, "the file's sha256 does not match Content-SHA256"
        )
    return StoredUpload(key, info.sha256, info.size)


# A new document, its job and the upload's event in one autocommit statement: one round
# trip instead of six, so under load an upload waits for one commit, not for five more turns
# on a busy server. `found` is the new job, or (same user, same bytes) the job of the
# document already there. The wake-up follows the commit (`jobs.notify` says why).
_RECORD_UPLOAD = (
    "WITH doc AS ("
    " INSERT INTO docingest.documents (document_id, user_id, filename, mime, bytes_len,"
    " file_sha256, raw_path)"
    " VALUES (%(document_id)s, %(user_id)s, %(filename)s, 'application/pdf', %(size)s,"
    " %(sha256)s, %(raw_path)s)"
    " ON CONFLICT DO NOTHING RETURNING document_id"
    "), job AS ("
    " INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path, correlation_id)"
    " SELECT %(job_id)s, %(user_id)s, document_id, %(raw_path)s, %(correlation_id)s FROM doc"
    " RETURNING *"
    "), found AS ("
    " SELECT * FROM job UNION ALL SELECT * FROM docingest.upload_jobs"
    " WHERE document_id = %(document_id)s AND user_id = %(user_id)s"
    " AND NOT EXISTS (SELECT 1 FROM doc)"
    "), logged AS (" + events.INSERT + " SELECT %(actor)s, 'document.upload',"
    " CASE WHEN EXISTS (SELECT 1 FROM doc) THEN 'created' ELSE 'duplicate' END,"
    " job_id, document_id, %(correlation_id)s, %(detail)s FROM found"
    ") SELECT found.*, EXISTS (SELECT 1 FROM doc) AS created FROM found"
)


async def record_upload(
    connection: AbstractAsyncContextManager[DictConn],
    blobs: BlobStore,
    stored: StoredUpload,
    *,
    user_id: UUID,
    filename: str,
    actor: str,
    correlation_id: UUID | None = None,
) -> UploadResult:
    """Record document + job for a stored upload, atomically, then wake the workers (a
    NOTIFY once committed), on an autocommit connection taken only now (`connection`, e.g.
    `pool.connection()`).

    Same user + same bytes -> the existing document (`duplicate=True`), the new blob removed.
    If recording fails (no connection in time included) the blob is removed too: no blob
    outlives its row. Unless the statement's answer was lost with its connection: it may
    have committed, and the blob would be the document's, so it is kept (`docingest purge`
    removes it later if no row names it)."""
    correlation_id = correlation_id or uuid4()
    document_id = document_id_for(user_id, stored.sha256)
    params = {
        "document_id": document_id,
        "user_id": user_id,
        "filename": clean_filename(filename),
        "size": stored.size,
        "sha256": stored.sha256,
        "raw_path": stored.key,
        "job_id": uuid4(),
        "correlation_id": correlation_id,
        "actor": actor,
        "detail": Jsonb({"bytes": stored.size}),
    }
    sent = recorded = False
    try:
        async with connection as conn:
            sent = True
            row = await (await conn.execute(_RECORD_UPLOAD, params)).fetchone()
            if row is None:
                # the same bytes were being recorded by a concurrent upload: our insert waited
                # for it, but its rows committed after this statement's snapshot was taken;
                # run again, the statement now finds them and records a duplicate
                row = await (await conn.execute(_RECORD_UPLOAD, params)).fetchone()
            if row is None:
                # ids are per user, so a document without its job is a bug worth surfacing
                raise DocingestError(ErrorCode.INTERNAL, "document without job")
            created, existing = bool(row["created"]), Job.from_row(row)
            recorded = True  # committed: from here on the blob is the document's
            if created:
                await jobs.notify(conn)
    except BaseException as exc:
        if not recorded and not (sent and _answer_lost(exc)):
            await asyncio.shield(blobs.delete(stored.key))
        raise
    if not created:
        await blobs.delete(stored.key)
    return UploadResult(document_id, existing.job_id, existing.status, duplicate=not created)


def _answer_lost(exc: BaseException) -> bool:
    """The connection failed under a statement (no SQLSTATE: the server reported no error),
    so whether it committed is unknown; a statement the server refused was rolled back."""
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None


async def accept_upload(
    conn: DictConn,
    blobs: BlobStore,
    *,
    user_id: UUID,
    filename_of: Callable[[], str],
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    actor: str,
    correlation_id: UUID | None = None,
    expected_sha256: str | None = None,
) -> UploadResult:
    """`store_upload` then `record_upload` on `conn` (for callers that already hold one: the
    CLI's ingest). `filename_of` is read after the stream ends (multipart headers may arrive
    with the data)."""
    stored = await store_upload(
        blobs, user_id=user_id, chunks=chunks, max_bytes=max_bytes, expected_sha256=expected_sha256
    )
    return await record_upload(
        _held(conn),
        blobs,
        stored,
        user_id=user_id,
        filename=filename_of(),
        actor=actor,
        correlation_id=correlation_id,
    )


@asynccontextmanager
async def _held(conn: DictConn) -> AsyncIterator[DictConn]:
    yield conn


async def get(conn: DictConn, document_id: UUID, user_id: UUID | None) -> Document | None:
    """A document by id; with `user_id`, only when it belongs to that user."""
    if user_id is None:
        return await get_any(conn, document_id)
    cur = await conn.execute(
        "SELECT * FROM docingest.documents WHERE document_id = %s AND user_id = %s",
        (document_id, user_id),
    )
    row = await cur.fetchone()
    return Document.from_row(row) if row else None


async def get_any(conn: DictConn, document_id: UUID) -> Document | None:
    cur = await conn.execute(
        "SELECT * FROM docingest.documents WHERE document_id = %s", (document_id,)
    )
    row = await cur.fetchone()
    return Document.from_row(row) if row else None


async def list_for_user(
    conn: DictConn, user_id: UUID, *, limit: int, offset: int
) -> tuple[list[tuple[Document, Job]], int]:
    """One page of the user's documents with their jobs, newest first, and the total count."""
    cur = await conn.execute(
        "SELECT * FROM docingest.documents WHERE user_id = %s"
        " ORDER BY created_at DESC, document_id LIMIT %s OFFSET %s",
        (user_id, limit, offset),
    )
    docs = [Document.from_row(r) for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT * FROM docingest.upload_jobs WHERE document_id = ANY(%s)",
        ([d.document_id for d in docs],),
    )
    by_doc = {j.document_id: j for j in (Job.from_row(r) for r in await cur.fetchall())}
    cur = await conn.execute(
        "SELECT count(*) AS n FROM docingest.documents WHERE user_id = %s", (user_id,)
    )
    total = await cur.fetchone()
    pairs = [(d, by_doc[d.document_id]) for d in docs if d.document_id in by_doc]
    return pairs, int(total["n"]) if total else 0


async def chunk_count(conn: DictConn, document_id: UUID) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT count(*) AS chunks, count(embedding) AS vectors FROM docingest.document_chunks"
        " WHERE document_id = %s",
        (document_id,),
    )
    row: dict[str, Any] | None = await cur.fetchone()
    return {"chunks": int(row["chunks"]), "vectors": int(row["vectors"])} if row else {}


async def delete(
    conn: DictConn,
    blobs: BlobStore,
    document_id: UUID,
    user_id: UUID,
    *,
    actor: str,
    action: str = "document.delete",
) -> bool:
    """Remove the document, its job, chunks, vectors and buffers (cascade) and its blobs.
    The audit trail stays; one `action` event (ids only) records the removal."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT j.job_id, j.parsed_path, j.correlation_id FROM docingest.upload_jobs j"
            " WHERE j.document_id = %s AND j.user_id = %s FOR UPDATE",
            (document_id, user_id),
        )
        job_row = await cur.fetchone()
        cur = await conn.execute(
            "DELETE FROM docingest.documents WHERE document_id = %s AND user_id = %s"
            " RETURNING raw_path",
            (document_id, user_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await events.record(
            conn,
            actor=actor,
            action=action,
            document_id=document_id,
            job_id=job_row["job_id"] if job_row else None,
            correlation_id=job_row["correlation_id"] if job_row else None,
        )
    await blobs.delete(row["raw_path"])
    if job_row:
        if job_row["parsed_path"]:
            await blobs.delete(job_row["parsed_path"])
        # every artifact of the job, recorded or not (a stage may have written one last)
        await delete_prefix(blobs, job_prefix(document_id, job_row["job_id"]))
    return True


async def set_kind(conn: DictConn, document_id: UUID, kind: str) -> None:
    """Record what kind of document this is (pipeline/document_kind.py), read when chunked."""
    await conn.execute(
        "UPDATE docingest.documents SET kind = %s WHERE document_id = %s", (kind, document_id)
    )
