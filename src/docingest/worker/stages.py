"""One function per status: do the stage's work, then commit its writes together with the
status change. Each is idempotent (deterministic keys + ON CONFLICT), so re-running a stage
after a crash writes nothing new."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator

import psycopg

from docingest.clients.embedders import Embedder
from docingest.domain.errors import ErrorCode, PermanentError
from docingest.domain.states import JobStatus
from docingest.pipeline import chunker, document_kind, hashing, ids
from docingest.pipeline.normalize import normalize_markdown
from docingest.pipeline.parsed_markdown import has_text, prepare
from docingest.pipeline.tokens import CL100K, count_tokens
from docingest.store import chunks as chunk_store
from docingest.store import documents, jobs
from docingest.store.db import DictConn
from docingest.store.records import Job
from docingest.worker import remote_parse
from docingest.worker.context import RemoteParser, StageContext
from docingest.worker.embed_batcher import EmbeddingBatcher
from docingest.worker.embed_gate import EmbeddingGate
from docingest.worker.embedding import DocumentEmbedding
from docingest.worker.stage_io import load_raw, store_parsed

log = logging.getLogger(__name__)

Stage = Callable[[StageContext, Job], Awaitable[Job]]

CHUNKS_VERSION = f"{chunker.CHUNKER_NAME}@{chunker.CHUNKER_VERSION}"


async def _advance(ctx: StageContext, job: Job, dst: JobStatus, **sets: object) -> Job:
    """A transition with nothing else to write (its event comes with it)."""
    async with ctx.pool.connection() as conn:
        return await jobs.transition(conn, job, ctx.worker_id, dst, sets=sets)


async def submit_parse(ctx: StageContext, job: Job) -> Job:
    """uploaded -> parse_queued: the parser is chosen and recorded (a remote parser gets the
    file now and calls back later)."""
    if isinstance(ctx.parser, RemoteParser):
        await remote_parse.submit(ctx, job, ctx.parser)
    return await _advance(
        ctx,
        job,
        JobStatus.PARSE_QUEUED,
        parser_name=ctx.parser.name,
        parser_version=ctx.parser.version,
    )


async def run_parse(ctx: StageContext, job: Job) -> Job:
    """parse_queued -> parsed: decrypt + verify the raw file, parse it in a child process,
    store the normalized markdown (encrypted, content-addressed), record its sha256. A remote
    parser's job is reconciled instead (its callback did not come in time)."""
    if isinstance(ctx.parser, RemoteParser):
        return await remote_parse.reconcile(ctx, job, ctx.parser)
    raw = await load_raw(ctx, job)
    parsed = await ctx.parser.parse(raw)
    del raw
    return await store_parsed(
        ctx,
        job,
        prepare(job.document_id, job.job_id, parsed.markdown, ctx.work.max_document_chars),
        parser_name=ctx.parser.name,
        parser_version=ctx.parser.version,
        also=("parse.repaired",) if parsed.repaired else (),
        pages=parsed.pages,
        empty_pages=parsed.empty_pages,
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
    if normalize_markdown(markdown) != markdown or not has_text(markdown):
        raise PermanentError(ErrorCode.INTEGRITY_ERROR, "parsed artifact is not normalized text")
    return await _advance(ctx, job, JobStatus.PARSE_VALIDATED)


async def start_chunking(ctx: StageContext, job: Job) -> Job:
    return await _advance(ctx, job, JobStatus.CHUNKING, chunks_version=CHUNKS_VERSION)


#: chunks the chunking stage hands to Postgres at a time while the chunker cuts the next ones
CHUNK_ROWS_PER_INSERT = 200


def _sized_chunks(
    markdown: str,
    embedder: Embedder,
    *,
    target_tokens: int,
    max_tokens: int,
    max_chunks: int | None,
) -> Iterator[chunker.Chunk]:
    """`markdown-simple@1` sized for `embedder` (never over its input limit). More than
    `max_chunks` chunks: PermanentError `too_many_chunks`, raised as soon as the first one
    too many is cut (no more work)."""
    limit = min(max_tokens, embedder.max_input_tokens)
    pieces = chunker.iter_chunks(
        markdown,
        count_tokens=count_tokens,
        target_tokens=min(target_tokens, limit),
        max_tokens=limit,
        counter=CL100K,
    )
    for piece in pieces:
        if max_chunks is not None and piece.ord >= max_chunks:
            raise PermanentError(
                ErrorCode.TOO_MANY_CHUNKS, f"the document makes more than {max_chunks} chunks"
            )
        yield piece


async def chunk_for(
    markdown: str,
    embedder: Embedder,
    *,
    target_tokens: int = StageContext.chunk_target_tokens,
    max_tokens: int = StageContext.chunk_max_tokens,
    max_chunks: int | None = None,
) -> list[chunker.Chunk]:
    """The worker's chunking, all at once and off the event loop. compare-001 and validate
    call this, so their chunks are the worker's by construction."""
    pieces = _sized_chunks(
        markdown,
        embedder,
        target_tokens=target_tokens,
        max_tokens=max_tokens,
        max_chunks=max_chunks,
    )
    return await asyncio.to_thread(list, pieces)


async def _chunk_batches(
    pieces: Iterator[chunker.Chunk],
) -> AsyncGenerator[list[chunker.Chunk], None]:
    """`pieces` in lists of `CHUNK_ROWS_PER_INSERT`, cut in a thread one list ahead: the
    chunker (tiktoken, off the GIL) works on the next list while the caller stores this one,
    so the two overlap on two cores."""

    def take() -> list[chunker.Chunk]:
        return list(itertools.islice(pieces, CHUNK_ROWS_PER_INSERT))

    ahead = asyncio.ensure_future(asyncio.to_thread(take))
    try:
        while batch := await ahead:
            ahead = asyncio.ensure_future(asyncio.to_thread(take))
            yield batch
    finally:
        if not ahead.done():  # the caller stopped early: let the thread finish its list
            await asyncio.wait([ahead])


def _chunk_row(job: Job, piece: chunker.Chunk, pages_known: bool) -> chunk_store.ChunkRow:
    meta = piece.meta if pages_known else {**piece.meta, "page_start": None, "page_end": None}
    return chunk_store.ChunkRow(
        chunk_id=ids.chunk_id(
            job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION, piece.ord
        ),
        chunk_ord=piece.ord,
        chunk_sha=hashing.chunk_sha(piece.text),
        text=piece.text,
        meta=meta,
    )


async def run_chunking(ctx: StageContext, job: Job) -> Job:
    """chunking -> chunks_stored: chunk rows (pages only where the parser marked them) and the
    document's kind, written in the same transaction as the status. Rows go in as the chunker
    cuts them (`_chunk_batches`); a failure anywhere rolls every one of them back."""
    markdown = await _load_parsed(ctx, job)
    pages_known = chunker.has_page_markers(markdown)
    pieces = _sized_chunks(
        markdown,
        ctx.embedder,
        target_tokens=ctx.chunk_target_tokens,
        max_tokens=ctx.chunk_max_tokens,
        max_chunks=ctx.work.max_chunks,
    )
    total = 0
    async with (
        ctx.pool.connection() as conn,
        conn.transaction(),
        contextlib.aclosing(_chunk_batches(pieces)) as batches,  # a failed insert stops it now
    ):
        async for batch in batches:
            rows = [_chunk_row(job, piece, pages_known) for piece in batch]
            await chunk_store.insert_chunk_buffer(
                conn, job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION, rows
            )
            total += len(rows)
        if not total:
            raise PermanentError(ErrorCode.CHUNKING_ERROR, "document produced no chunks")
        stored = await chunk_store.count_chunk_buffer(
            conn, job.document_id, chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION
        )
        if stored != total:
            raise PermanentError(
                ErrorCode.CHUNKING_ERROR, "chunk buffer disagrees with chunker output"
            )
        await documents.set_kind(conn, job.document_id, document_kind.classify(markdown))
        progress = {**job.progress, "chunks_total": total, "chunks_done": total}
        return await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.CHUNKS_STORED,
            sets={"progress": progress},
            event=jobs.worker_event(ctx.worker_id, chunks=total),
        )


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
        return await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.EMBEDDING_QUEUED,
            sets={"embed_model": e.model, "embed_version": e.version, "progress": progress},
        )


async def start_embedding(ctx: StageContext, job: Job) -> Job:
    return await _advance(ctx, job, JobStatus.EMBEDDING_IN_PROGRESS)


async def run_embedding(ctx: StageContext, job: Job) -> Job:
    """embedding_in_progress -> embeddings_stored, in micro-batches shared with the worker's
    other embedding jobs, through the shared rate budget and circuit breaker, each distinct
    text paid for once (`worker/embedding.py`, `worker/embed_batcher.py`)."""
    model, version = _model_of(ctx, job)
    if ctx.embed_batcher is not None:
        return await DocumentEmbedding(ctx, job, ctx.embed_batcher, model, version).run()
    # a stage run on its own (tests): a batcher of its own, unlimited budget, default breaker
    gate = ctx.embed_gate or EmbeddingGate(ctx.pool, ctx.embedder, actor=f"worker:{ctx.worker_id}")
    batcher = EmbeddingBatcher(gate, max_inputs=ctx.embedder.max_batch_inputs)
    try:
        return await DocumentEmbedding(ctx, job, batcher, model, version).run()
    finally:
        await batcher.aclose()


def _model_of(ctx: StageContext, job: Job) -> tuple[str, str]:
    model = job.embed_model or ctx.embedder.model
    version = job.embed_version or ctx.embedder.version
    if (model, version) != (ctx.embedder.model, ctx.embedder.version):
        raise PermanentError(
            ErrorCode.EMBEDDING_REJECTED, "job was queued for another embedding model/version"
        )
    return model, version


async def finalize(ctx: StageContext, job: Job) -> Job:
    """embeddings_stored -> complete: promote into the searchable table, clear the buffers;
    then, the document searchable, merge the word index's pending list (migration 0018)."""
    model, version = _model_of(ctx, job)
    async with ctx.pool.connection() as conn:
        async with conn.transaction():
            done = await _promote(ctx, conn, job, model, version)
        try:
            await chunk_store.merge_pending_words(conn)
        except psycopg.Error as exc:
            # upkeep, not the job's work: the job is complete, the rows searchable, and the
            # next promotion (or an insert past the list's limit) merges what is left
            log.warning(
                "word index merge failed: %s",
                type(exc).__name__,
                extra={"action": "word_merge_error", "job_id": str(job.job_id)},
            )
    return done


async def _promote(ctx: StageContext, conn: DictConn, job: Job, model: str, version: str) -> Job:
    buffered, searchable = await chunk_store.promote(
        conn, job.document_id, job.user_id, model, version
    )
    total = job.progress.get("chunks_total", 0)
    if buffered != total or searchable != total:
        raise PermanentError(
            ErrorCode.INTEGRITY_ERROR, "promotion would leave chunks without vectors"
        )
    await chunk_store.clear_buffers(conn, job.document_id)
    return await jobs.transition(
        conn,
        job,
        ctx.worker_id,
        JobStatus.COMPLETE,
        event=jobs.worker_event(ctx.worker_id, chunks=searchable),
    )


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


def hands_off(ctx: StageContext, status: JobStatus) -> bool:
    """Whether the stage for `status` ends by handing the job to a remote parser: it brings
    no text to the embedding batcher until the parser calls back, seconds later."""
    return status is JobStatus.UPLOADED and isinstance(ctx.parser, RemoteParser)
