"""`docingest migrate-001`: carry a 001 database into docingest (MAPPING.md).

One run is one batch. The 001 side is read in one read-only snapshot, documents in batches
(server-side cursors); per batch, chunks and vectors are checked row by row (chunk id
recomputed from its canonical key, chunk_sha recomputed from its text, vector dimension and
vector_sha from the vector's wire bytes) in a thread that stays one batch ahead of the writer;
then the documents are placed and their rows bulk-loaded with binary COPY (`staging_001`:
straight into the tables for documents inserted now, through staging + `ON CONFLICT DO
NOTHING` for documents that already existed). Memory holds at most three batches (being
read, waiting, being written): about 30 MB each at 250 documents x 20 chunks x 1536 dims,
whatever the number of documents.
The whole run is one target transaction: a dry run rolls it back, and a run that would write
nothing (a rerun) rolls back too, so it leaves no trace, not even a batch row.
Every row that cannot be mapped becomes a `Problem` with its 001 id and a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from docingest.domain import legacy_001 as mapping
from docingest.domain.legacy_001 import Carry, ChunkSupport, LegacyJob, Target
from docingest.domain.states import JobStatus
from docingest.ops import blob_import, staging_001
from docingest.ops.legacy_source import (
    LegacyChunk,
    LegacyDocument,
    LegacyPendingVector,
    LegacySource,
    fingerprint,
)
from docingest.pipeline import hashing, ids, vector_wire
from docingest.store import events
from docingest.store.blobs import BlobStore

DEFAULT_BATCH_DOCUMENTS = 250
_WRITTEN_KEYS = (
    "documents",
    "upload_jobs",
    *(s.table for s in staging_001.SINKS),
    "blob_paths_adopted",
)
_SHA256_HEX = frozenset("0123456789abcdef")
ModelKey = tuple[str, str]


@dataclass(frozen=True)
class Problem:
    id: str
    reason: str


@dataclass
class Summary:
    batch: UUID
    documents: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    chunks: int = 0  # chunk rows carried (valid and placed), counted on every run
    written: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    committed: bool = False

    def problem(self, row_id: UUID | str, reason: str) -> None:
        self.problems.append(Problem(str(row_id), reason))

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape of DESIGN.md / issue 5, exactly."""
        return {
            "batch": str(self.batch),
            "documents": self.documents,
            "by_status": dict(sorted(self.by_status.items())),
            "problems": [{"id": p.id, "reason": p.reason} for p in self.problems],
        }


@dataclass(frozen=True)
class Options:
    schema: str = "upload_pipeline"
    dry_run: bool = False
    blobs_from: Path | None = None
    batch_documents: int = DEFAULT_BATCH_DOCUMENTS
    actor: str = "cli:migrate-001"
    #: 001 embed_version -> docingest embed_version (`mapping.version_map`), for every model
    embed_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Vector:
    sha: str  # of the vector as stored (float16-rounded)
    data: bytes  # pgvector `halfvec` wire format


@dataclass
class _DocChunks:
    """What one document's 001 chunks amount to, built while streaming them."""

    valid: set[UUID] = field(default_factory=set)
    rows: list[LegacyChunk] = field(default_factory=list)  # the valid ones, in order
    rejected: int = 0
    chunker: tuple[str, str] | None = None
    live_models: Counter[ModelKey] = field(default_factory=Counter)
    vectors: dict[UUID, dict[ModelKey, _Vector]] = field(default_factory=dict)

    def model(self) -> ModelKey | None:
        """The document's model/version: the one most of its live vectors use."""
        if not self.live_models:
            return None
        return min(self.live_models.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def support(self) -> ChunkSupport:
        model = self.model()
        embedded = sum(1 for c in self.valid if model in self.vectors.get(c, {}))
        return ChunkSupport(len(self.valid), self.rejected, embedded)


async def migrate(
    source_dsn: str, target_dsn: str, blobs: BlobStore | None, options: Options
) -> Summary:
    """Run one migration batch. `blobs` is needed only with `options.blobs_from`."""
    if options.blobs_from is not None and blobs is None:
        raise ValueError("blobs_from needs a blob store")
    summary = Summary(batch=uuid4(), dry_run=options.dry_run)
    source = await asyncio.to_thread(LegacySource.open, source_dsn, options.schema)
    try:
        async with _target(target_dsn) as conn:
            await _run(source, conn, blobs, options, summary, fingerprint(source_dsn))
    finally:
        await asyncio.to_thread(source.close)
    return summary


@contextlib.asynccontextmanager
async def _target(dsn: str) -> AsyncIterator[AsyncConnection[Any]]:
    conn = await AsyncConnection.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def _run(
    source: LegacySource,
    conn: AsyncConnection[Any],
    blobs: BlobStore | None,
    options: Options,
    summary: Summary,
    source_name: str,
) -> None:
    started = datetime.now(UTC)
    await staging_001.create(conn)
    await conn.execute(
        "INSERT INTO docingest.migration_batches (batch_id, source, source_schema, started_at)"
        " VALUES (%s, %s, %s, %s)",
        (summary.batch, source_name, options.schema, started),
    )
    for row_id, reason in await asyncio.to_thread(source.dangling):
        summary.problem(row_id, reason)
    totals: Counter[str] = Counter()
    reads = _read_ahead(source, options, summary.batch)
    async with contextlib.aclosing(reads):
        async for read in reads:
            totals.update(await _write_batch(conn, blobs, options, summary, read))
            await staging_001.clear(conn)
    summary.written = {k: totals[k] for k in _WRITTEN_KEYS}
    wrote = any(totals.values())
    if options.dry_run or not wrote:
        await conn.rollback()
        return
    await conn.execute(
        "UPDATE docingest.migration_batches SET finished_at = now(), summary = %s"
        " WHERE batch_id = %s",
        (Jsonb({**summary.to_json(), "written": summary.written}), summary.batch),
    )
    await events.record(
        conn,
        actor=options.actor,
        action="migration.001.batch",
        detail={
            "batch": str(summary.batch),
            "documents": summary.documents,
            "chunks": summary.chunks,
            "problems": len(summary.problems),
            "written": summary.written,
        },
    )
    await conn.commit()
    summary.committed = True


@dataclass
class _Read:
    """One batch of 001 documents as read and checked, not yet placed."""

    found: Summary  # the documents read and the problems met while reading
    docs: list[LegacyDocument]  # the valid ones
    jobs: dict[UUID, list[LegacyJob]]
    chunks: dict[UUID, _DocChunks]


async def _read_ahead(
    source: LegacySource, options: Options, batch: UUID
) -> AsyncGenerator[_Read, None]:
    """The batches, read and checked in a thread one batch ahead of the caller, so that the
    001 server and the checks work while the docingest server writes the previous batch."""
    out: queue.Queue[_Read | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: _Read | BaseException | None) -> bool:
        while not stop.is_set():  # the reader gave up: stop producing
            with contextlib.suppress(queue.Full):
                out.put(item, timeout=0.2)
                return True
        return False

    def produce() -> None:
        try:
            for docs in source.documents(options.batch_documents):
                read = _read_batch(source, docs, options.embed_versions, Summary(batch=batch))
                if not offer(read):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            offer(exc)
            return
        offer(None)

    thread = threading.Thread(target=produce, name="migrate-001-read", daemon=True)
    thread.start()
    try:
        while (item := await asyncio.to_thread(out.get)) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
        with contextlib.suppress(queue.Full):  # wake a `get` left waiting by a cancellation
            out.put_nowait(None)


def _read_batch(
    source: LegacySource, docs: list[LegacyDocument], versions: dict[str, str], found: Summary
) -> _Read:
    found.documents = len(docs)
    docs = [d for d in docs if _valid_document(d, found)]
    doc_ids = [d.document_id for d in docs]
    jobs: dict[UUID, list[LegacyJob]] = {d: [] for d in doc_ids}
    for document_id, job in source.jobs(doc_ids):
        jobs[document_id].append(job)
    chunks = {d: _DocChunks() for d in doc_ids}
    _read_chunks(source, doc_ids, chunks, versions, found)
    _read_pending(source, doc_ids, chunks, versions, found)
    return _Read(found, docs, jobs, chunks)


async def _write_batch(
    conn: AsyncConnection[Any],
    blobs: BlobStore | None,
    options: Options,
    summary: Summary,
    read: _Read,
) -> dict[str, int]:
    summary.documents += read.found.documents
    summary.problems.extend(read.found.problems)
    docs, jobs, chunks = read.docs, read.jobs, read.chunks
    staged: dict[UUID, Target] = {}
    async with conn.cursor().copy(staging_001.DOC_COPY) as copy:
        for doc in docs:
            row, target = await _plan(
                doc, jobs[doc.document_id], chunks[doc.document_id], blobs, options, summary
            )
            await copy.write_row(row)
            staged[doc.document_id] = target
    conflicts = await staging_001.conflicting_files(conn)
    for document_id, existing in conflicts:
        summary.problem(
            document_id,
            f"duplicate_file: the same user already has this file in docingest as {existing}",
        )
        staged.pop(document_id)
    if conflicts:
        await staging_001.unstage(conn, [c[0] for c in conflicts])
    for document_id, target in staged.items():
        summary.by_status[target.status.value] += 1
        if target.carry is not Carry.NONE:
            summary.chunks += len(chunks[document_id].valid)
    written, inserted = await staging_001.apply_documents(conn, summary.batch)
    users = {d.document_id: d.user_id for d in docs}
    for staged_now in (False, True):  # documents inserted now go straight in
        rows = _rows(
            {
                d: t.carry
                for d, t in staged.items()
                if (d not in inserted) is staged_now and t.carry is not Carry.NONE
            },
            chunks,
            users,
            summary.batch,
        )
        for sink in staging_001.SINKS:
            written[sink.table] = written.get(sink.table, 0) + await staging_001.write(
                conn, sink, rows[sink.table], staged=staged_now
            )
    return written


def _rows(
    carry: dict[UUID, Carry], chunks: dict[UUID, _DocChunks], users: dict[UUID, UUID], batch: UUID
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the carried documents, per docingest table (`staging_001.SINKS` columns)."""
    out: dict[str, list[tuple[Any, ...]]] = {s.table: [] for s in staging_001.SINKS}
    for document_id, where in carry.items():
        doc = chunks[document_id]
        for c in doc.rows:
            key = (c.chunk_id, c.document_id, c.chunk_ord, c.chunker_name, c.chunker_version)
            sha = c.chunk_sha.lower()
            vectors = sorted(doc.vectors.get(c.chunk_id, {}).items())
            if where is Carry.PROMOTED:
                out[staging_001.CHUNKS.table].extend(
                    (
                        c.chunk_id,
                        c.document_id,
                        users[document_id],
                        *key[2:],
                        sha,
                        c.text,
                        model,
                        version,
                        v.data,
                        v.sha,
                        batch,
                    )
                    for (model, version), v in vectors
                )
                continue
            out[staging_001.CHUNK_BUFFER.table].append((*key, sha, c.text, batch))
            out[staging_001.VECTOR_BUFFER.table].extend(
                (c.document_id, c.chunk_id, sha, model, version, v.data, v.sha, batch, batch)
                for (model, version), v in vectors
            )
    return out


def _valid_document(doc: LegacyDocument, summary: Summary) -> bool:
    sha = (doc.file_sha256 or "").lower()
    if len(sha) != 64 or not set(sha) <= _SHA256_HEX or doc.bytes_len <= 0:
        summary.problem(doc.document_id, "invalid_document: file_sha256 or bytes_len unusable")
        return False
    return True


def _read_chunks(
    source: LegacySource,
    doc_ids: list[UUID],
    chunks: dict[UUID, _DocChunks],
    versions: dict[str, str],
    summary: Summary,
) -> None:
    for c in source.chunks(doc_ids):
        doc = chunks[c.document_id]
        reason = _chunk_problem(c)
        if reason is not None:
            summary.problem(c.chunk_id, reason)
            doc.rejected += 1
            continue
        if c.chunk_id in doc.valid:  # only where 001's primary key was dropped
            summary.problem(c.chunk_id, "duplicate_chunk: a second row with this chunk_id")
            continue
        if doc.chunker is None:
            doc.chunker = (c.chunker_name, c.chunker_version)
        doc.valid.add(c.chunk_id)
        doc.rows.append(c)
        vector = _checked_vector(c.chunk_id, c.embedding, c.vector_dim, summary)
        if vector is not None:
            key = (c.embed_model, versions.get(c.embed_version, c.embed_version))
            doc.live_models[key] += 1
            doc.vectors.setdefault(c.chunk_id, {})[key] = vector


def _chunk_problem(c: LegacyChunk) -> str | None:
    if c.chunk_ord < 0 or c.chunk_id.bytes != ids.chunk_id_bytes(
        c.document_id, c.chunker_name, c.chunker_version, c.chunk_ord
    ):
        return "chunk_id_mismatch: chunk_id is not the UUIDv5 of its canonical key"
    if hashing.chunk_sha(c.text) != c.chunk_sha.lower():
        return "chunk_sha_mismatch: sha256 of the chunk text differs from chunk_sha"
    return None


def _checked_vector(
    row_id: UUID, embedding: bytes | None, vector_dim: int, summary: Summary
) -> _Vector | None:
    """The vector with its vector_sha when it has 001's dimension, else None + a problem."""
    dims = vector_wire.dimensions(embedding) if embedding is not None else None
    if embedding is None or dims != mapping.DIMENSIONS or vector_dim != dims:
        got = "none" if dims is None else dims
        summary.problem(
            row_id,
            f"wrong_dimensions: vector has {got} dimensions (vector_dim {vector_dim},"
            f" expected {mapping.DIMENSIONS}); the chunk is carried without it",
        )
        return None
    stored = vector_wire.to_halfvec(embedding)
    if stored is None:
        summary.problem(
            row_id, "vector_out_of_range: a value does not fit halfvec; carried without it"
        )
        return None
    return _Vector(stored[1], stored[0])


def _read_pending(
    source: LegacySource,
    doc_ids: list[UUID],
    chunks: dict[UUID, _DocChunks],
    versions: dict[str, str],
    summary: Summary,
) -> None:
    for p in source.pending_vectors(doc_ids):
        if not _pending_ok(p, chunks[p.document_id], summary):
            continue
        vector = _checked_vector(p.buffer_id, p.embedding, p.vector_dim, summary)
        if vector is None:
            continue
        key = (p.embed_model, versions.get(p.embed_version, p.embed_version))
        have = chunks[p.document_id].vectors.setdefault(p.chunk_id, {})
        if key in have and have[key].sha != vector.sha:
            summary.problem(
                p.buffer_id,
                "pending_vector_conflict: differs from the chunk's live vector of the same"
                " model/version; the live vector is kept",
            )
            continue
        have.setdefault(key, vector)


def _pending_ok(p: LegacyPendingVector, doc: _DocChunks, summary: Summary) -> bool:
    if p.chunk_id not in doc.valid:
        summary.problem(
            p.buffer_id, "pending_vector_orphaned: its chunk was not carried (see the chunk)"
        )
        return False
    return True


async def _plan(
    doc: LegacyDocument,
    jobs: list[LegacyJob],
    chunks: _DocChunks,
    blobs: BlobStore | None,
    options: Options,
    summary: Summary,
) -> tuple[tuple[Any, ...], Target]:
    """Map one document: its position, its files, its chunks -> one staged row."""
    for job in jobs:
        if job.stage not in mapping.STAGES:
            summary.problem(job.job_id, "unknown_stage: 001 job stage is not in the stage list")
        elif job.state not in mapping.STATES:
            summary.problem(job.job_id, "unknown_state: 001 job state is not in the state list")
    position = mapping.position(jobs)
    if position is None:
        summary.problem(
            doc.document_id, "no_known_job: no usable 001 job row; re-processed from the raw file"
        )
    raw_path, parsed_path, has_parsed = await _files(doc, blobs, options, summary)
    support = chunks.support()
    target = mapping.map_status(position, has_parsed=has_parsed, support=support)
    carried = target.carry is not Carry.NONE
    if not carried and (chunks.valid or chunks.rejected):
        summary.problem(
            doc.document_id,
            f"chunks_not_carried: {len(chunks.valid) + chunks.rejected} chunk rows left behind"
            f" (status {target.status.value}); the document is re-chunked",
        )
    model = chunks.model() if carried else None
    n = len(chunks.valid) if carried else 0
    progress = {
        "chunks_total": n,
        "chunks_done": n,
        "embeds_total": n,
        "embeds_done": support.with_vector if carried else 0,
    }
    with_model = target.status in (JobStatus.COMPLETE, JobStatus.EMBEDDINGS_STORED)
    row = (
        doc.document_id,
        doc.user_id,
        doc.filename,
        doc.mime,
        doc.bytes_len,
        doc.file_sha256.lower(),
        raw_path,
        doc.created_at,
        position.job_id
        if position
        else uuid5(ids.NAMESPACE, f"migration-001-job:{doc.document_id}"),
        target.status.value,
        target.resume_status.value if target.resume_status else None,
        parsed_path if has_parsed else None,
        doc.parsed_sha256 if has_parsed else None,
        f"{chunks.chunker[0]}@{chunks.chunker[1]}" if carried and chunks.chunker else None,
        model[0] if with_model and model else None,
        model[1] if with_model and model else None,
        Jsonb(progress),
        position.retry_count if position else 0,
        Jsonb(mapping.legacy_error(position)) if position and position.last_error else None,
        target.carry.value,
    )
    return row, target


async def _files(
    doc: LegacyDocument, blobs: BlobStore | None, options: Options, summary: Summary
) -> tuple[str, str | None, bool]:
    """(raw_path, parsed_path, has_parsed): blob keys when the export supplied verified files,
    else the 001 paths, carried and reported as not yet copied."""
    has_parsed = bool(doc.parsed_path and doc.parsed_sha256)
    if options.blobs_from is None or blobs is None:
        summary.problem(
            doc.document_id,
            "blobs_not_copied: files still at their 001 storage paths; rerun with --blobs-from",
        )
        return doc.raw_path, doc.parsed_path, has_parsed
    write = not options.dry_run
    raw = await blob_import.import_file(
        blobs,
        options.blobs_from,
        doc.raw_path,
        doc.file_sha256,
        blob_import.raw_key(doc.user_id, doc.document_id),
        write=write,
    )
    if raw.problem:
        summary.problem(doc.document_id, f"raw {raw.problem}")
    parsed_path = doc.parsed_path
    if has_parsed:
        assert doc.parsed_path is not None and doc.parsed_sha256 is not None
        parsed = await blob_import.import_file(
            blobs,
            options.blobs_from,
            doc.parsed_path,
            doc.parsed_sha256,
            blob_import.parsed_key(doc.document_id, doc.parsed_sha256.lower()),
            write=write,
        )
        if parsed.problem:
            summary.problem(doc.document_id, f"parsed {parsed.problem}; re-parsed instead")
            has_parsed = False
        parsed_path = parsed.key
    return raw.key or doc.raw_path, parsed_path, has_parsed
