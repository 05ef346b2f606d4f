"""One function per status: do the stage's work, then commit its writes together with the
status change. Each is idempotent (deterministic keys + ON CONFLICT), so re-running a stage
after a crash writes nothing new."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import uuid4

from docingest.domain.errors import ErrorCode, ParseError, PermanentError
from docingest.domain.states import JobStatus
from docingest.pipeline import chunker, hashing, ids
from docingest.pipeline.batching import plan_batches
from docingest.pipeline.normalize import normalize_markdown
from docingest.pipeline.tokens import count_tokens
from docingest.store import chunks as chunk_store
from docingest.store import documents, events, jobs
from docingest.store.records import Job
from docingest.worker.context import StageContext

Stage = Callable[[StageContext, Job], Awaitable[Job]]

CHUNKS_VERSION = f"{chunker.CHUNKER_NAME}@{chunker.CHUNKER_VERSION}"
_CHUNKER = (chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION)
PAGE_MARKER_PREFIX = "<!-- page "


async def _advance(ctx: StageContext, job: Job, dst: JobStatus, **sets: object) -> Job:
    """A transition with nothing else to write, plus its event, in one transaction."""
    async with ctx.pool.connection() as conn, conn.transaction():
        moved = await jobs.transition(conn, job, ctx.worker_id, dst, sets=sets)
        await _event(conn, moved, f"job.{dst.value}")
    return moved


async def _event(conn: object, job: Job, action: str, **detail: object) -> None:
    await events.record(
        conn,  # type: ignore[arg-type]
        actor=f"worker:{job.claimed_by}",
        action=action,
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
        detail=detail,
    )


async def submit_parse(ctx: StageContext, job: Job) -> Job:
    """uploaded -> parse_queued: the parser is chosen and recorded."""
    return await _advance(
        ctx,
        job,
        JobStatus.PARSE_QUEUED,
        parser_name=ctx.parser.name,
        parser_version=ctx.parser.version,
    )


async def run_parse(ctx: StageContext, job: Job) -> Job:
    """parse_queued -> parsed: decrypt + verify the raw file, parse it in a child process,
    store the normalized markdown (encrypted, content-addressed), record its sha256."""
    async with ctx.pool.connection() as conn:
        doc = await documents.get_any(conn, job.document_id)
    if doc is None:
        raise PermanentError(ErrorCode.INTERNAL, "document row missing")
    raw = await ctx.blobs.get_bytes(job.raw_path, expected_sha256=doc.file_sha256)
    parsed = await ctx.parser.parse(raw)
    del raw
    markdown = normalize_markdown(parsed.markdown)
    if not _has_text(markdown):
        raise ParseError(ErrorCode.NO_TEXT, "no text layer found (OCR is out of scope)")
    sha = hashing.parsed_sha256(markdown)
    key = f"parsed/{job.document_id}/{sha}.md.enc"
    await ctx.blobs.put_bytes(key, markdown.encode("utf-8"))
    async with ctx.pool.connection() as conn, conn.transaction():
        moved = await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.PARSED,
            sets={
                "parsed_path": key,
                "parsed_sha256": sha,
                "parser_name": ctx.parser.name,
                "parser_version": ctx.parser.version,
            },
        )
        await _event(conn, moved, "job.parsed", pages=parsed.pages, empty_pages=parsed.empty_pages)
        if parsed.repaired:
            await _event(conn, moved, "parse.repaired")
    return moved


def _has_text(markdown: str) -> bool:
    return any(
        line.strip() and not line.startswith(PAGE_MARKER_PREFIX) for line in markdown.splitlines()
    )


async def _load_parsed(ctx: StageContext, job: Job) -> str:
    if not job.parsed_path or not job.parsed_sha256:
        raise PermanentError(ErrorCode.INTEGRITY_ERROR, "parsed artifact not recorded")
    data = await ctx.blobs.get_bytes(job.parsed_path, expected_sha256=job.parsed_sha256)
    return data.decode("utf-8")


async def validate_parse(ctx: StageContext, job: Job) -> Job:
    """parsed -> parse_validated: the stored artifact decrypts, matches its recorded hash, is
    in normal form and has text."""
    markdown = await _load_parsed(ctx, job)
    if normalize_markdown(markdown) != markdown or not _has_text(markdown):
        raise PermanentError(ErrorCode.INTEGRITY_ERROR, "parsed artifact is not normalized text")
    return await _advance(ctx, job, JobStatus.PARSE_VALIDATED)


async def start_chunking(ctx: StageContext, job: Job) -> Job:
    return await _advance(ctx, job, JobStatus.CHUNKING, chunks_version=CHUNKS_VERSION)


async def run_chunking(ctx: StageContext, job: Job) -> Job:
    """chunking -> chunks_stored: chunk rows written in the same transaction as the status."""
    markdown = await _load_parsed(ctx, job)
    max_tokens = min(ctx.chunk_max_tokens, ctx.embedder.max_input_tokens)
    pieces = await asyncio.to_thread(
        chunker.chunk_markdown,
        markdown,
        count_tokens=count_tokens,
        target_tokens=min(ctx.chunk_target_tokens, max_tokens),
        max_tokens=max_tokens,
    )
    if not pieces:
        raise PermanentError(ErrorCode.CHUNKING_ERROR, "document produced no chunks")
    rows = [
        chunk_store.ChunkRow(
            chunk_id=ids.chunk_id(
                job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION, c.ord
            ),
            chunk_ord=c.ord,
            chunk_sha=hashing.chunk_sha(c.text),
            text=c.text,
            meta=dict(c.meta),
        )
        for c in pieces
    ]
    total = len(rows)
    async with ctx.pool.connection() as conn, conn.transaction():
        await chunk_store.insert_chunk_buffer(
            conn, job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION, rows
        )
        stored = await chunk_store.count_chunk_buffer(
            conn, job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION
        )
        if stored != total:
            raise PermanentError(
                ErrorCode.CHUNKING_ERROR, "chunk buffer disagrees with chunker output"
            )
        progress = {**job.progress, "chunks_total": total, "chunks_done": total}
        moved = await jobs.transition(
            conn, job, ctx.worker_id, JobStatus.CHUNKS_STORED, sets={"progress": progress}
        )
        await _event(conn, moved, "job.chunks_stored", chunks=total)
    return moved


async def queue_embedding(ctx: StageContext, job: Job) -> Job:
    """chunks_stored -> embedding_queued: the model/version is fixed for this job."""
    e = ctx.embedder
    async with ctx.pool.connection() as conn, conn.transaction():
        done = await chunk_store.count_vectors(conn, job.document_id, e.model, e.version)
        progress = {
            **job.progress,
            "embeds_total": job.progress.get("chunks_total", 0),
            "embeds_done": done,
        }
        moved = await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.EMBEDDING_QUEUED,
            sets={"embed_model": e.model, "embed_version": e.version, "progress": progress},
        )
        await _event(conn, moved, "job.embedding_queued")
    return moved


async def start_embedding(ctx: StageContext, job: Job) -> Job:
    return await _advance(ctx, job, JobStatus.EMBEDDING_IN_PROGRESS)


async def run_embedding(ctx: StageContext, job: Job) -> Job:
    """embedding_in_progress -> embeddings_stored, in micro-batches: each batch's vectors and
    the progress counter commit together before the next provider call."""
    e = ctx.embedder
    model, version = _model_of(ctx, job)
    async with ctx.pool.connection() as conn, conn.transaction():
        reused = await chunk_store.reuse_vectors(conn, job.document_id, model, version, uuid4())
        if reused:
            done = await chunk_store.count_vectors(conn, job.document_id, model, version)
            await jobs.set_progress(conn, job, ctx.worker_id, embeds_done=done)
            await _event(conn, job, "embedding.reused", vectors=reused)
    while True:
        async with ctx.pool.connection() as conn:
            pending = await chunk_store.missing_vectors(
                conn, job.document_id, _CHUNKER, model, version, e.max_batch_inputs
            )
        if not pending:
            break
        counts = [int(str(p.meta.get("tokens", 0))) or count_tokens(p.text) for p in pending]
        batch = pending[
            : len(
                plan_batches(counts, max_inputs=e.max_batch_inputs, max_tokens=e.max_batch_tokens)[
                    0
                ]
            )
        ]
        vectors = await e.embed([p.text for p in batch])
        if len(vectors) != len(batch):
            raise PermanentError(
                ErrorCode.EMBEDDING_REJECTED, "provider returned a wrong vector count"
            )
        rows = [
            chunk_store.VectorRow(p.chunk_id, v, hashing.vector_sha(v))
            for p, v in zip(batch, vectors, strict=True)
        ]
        async with ctx.pool.connection() as conn, conn.transaction():
            await chunk_store.insert_vectors(conn, job.document_id, model, version, uuid4(), rows)
            done = await chunk_store.count_vectors(conn, job.document_id, model, version)
            await jobs.set_progress(conn, job, ctx.worker_id, embeds_done=done)
    async with ctx.pool.connection() as conn, conn.transaction():
        done = await chunk_store.count_vectors(conn, job.document_id, model, version)
        total = job.progress.get("chunks_total", 0)
        if done != total:
            raise PermanentError(
                ErrorCode.INTEGRITY_ERROR, "vector count does not match chunk count"
            )
        moved = await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.EMBEDDINGS_STORED,
            sets={"progress": {**job.progress, "embeds_total": total, "embeds_done": done}},
        )
        await _event(conn, moved, "job.embeddings_stored", vectors=done)
    return moved


def _model_of(ctx: StageContext, job: Job) -> tuple[str, str]:
    model = job.embed_model or ctx.embedder.model
    version = job.embed_version or ctx.embedder.version
    if (model, version) != (ctx.embedder.model, ctx.embedder.version):
        raise PermanentError(
            ErrorCode.EMBEDDING_REJECTED, "job was queued for another embedding model/version"
        )
    return model, version


async def finalize(ctx: StageContext, job: Job) -> Job:
    """embeddings_stored -> complete: promote into the searchable table, clear the buffers."""
    model, version = _model_of(ctx, job)
    async with ctx.pool.connection() as conn, conn.transaction():
        buffered, searchable = await chunk_store.promote(
            conn, job.document_id, job.user_id, model, version
        )
        total = job.progress.get("chunks_total", 0)
        if buffered != total or searchable != total:
            raise PermanentError(
                ErrorCode.INTEGRITY_ERROR, "promotion would leave chunks without vectors"
            )
        await chunk_store.clear_buffers(conn, job.document_id)
        moved = await jobs.transition(conn, job, ctx.worker_id, JobStatus.COMPLETE)
        await _event(conn, moved, "job.complete", chunks=searchable)
    return moved


STAGES: dict[JobStatus, Stage] = {
    JobStatus.UPLOADED: submit_parse,
    JobStatus.PARSE_QUEUED: run_parse,
    JobStatus.PARSED: validate_parse,
    JobStatus.PARSE_VALIDATED: start_chunking,
    JobStatus.CHUNKING: run_chunking,
    JobStatus.CHUNKS_STORED: queue_embedding,
    JobStatus.EMBEDDING_QUEUED: start_embedding,
    JobStatus.EMBEDDING_IN_PROGRESS: run_embedding,
    JobStatus.EMBEDDINGS_STORED: finalize,
}
