"""The BaseWorker end to end in-process on real PDFs and a real Postgres: completion,
idempotency of every stage, dedupe, partial progress kept across a transient failure."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from docingest.bootstrap import Runtime
from docingest.clients.embedders import Embedded, HashEmbedder
from docingest.config import WorkLimits
from docingest.domain.errors import ErrorCode, PermanentError, TransientError
from docingest.domain.states import JobStatus
from docingest.pipeline.hashing import vector_sha
from docingest.store import jobs
from docingest.store.db import open_pool
from docingest.store.search import SearchMode, search
from docingest.testing.seed import place_parsed
from docingest.worker.base import BaseWorker, WorkerOptions
from docingest.worker.context import StageContext
from docingest.worker.embed_batcher import EmbeddingBatcher
from docingest.worker.embed_gate import EmbeddingGate
from docingest.worker.embedding import WINDOWS_IN_FLIGHT
from docingest.worker.runner import run_worker
from docingest.worker.stages import CHUNK_ROWS_PER_INSERT, STAGES
from tests.conftest import EXAMPLES
from tests.helpers import CountingEmbedder, claim_one, counts, make_runtime, upload
from tests.metrics_scrape import local

GLOSSARY = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
DEADLINE_S = 30.0
PROVIDER_LATENCY_S = 0.3  # a request's own time at the provider (RelayEmbedder)
PDFS = sorted(EXAMPLES.glob("*.pdf"))


async def test_examples_complete_with_one_vector_per_chunk_and_are_searchable(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path)
    user, other = uuid.uuid4(), uuid.uuid4()
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            results = [await upload(conn, rt, user, p) for p in PDFS]
        assert await run_worker(rt, concurrency=2, once=True, handle_signals=False) == len(PDFS)
        async with pool.connection() as conn:
            for res in results:
                job = await jobs.get(conn, res.job_id)
                assert job is not None and job.status == JobStatus.COMPLETE, job
                cur = await conn.execute(
                    "SELECT count(*) AS n, count(DISTINCT vector_sha) AS v FROM docingest.document_chunks"
                    " WHERE document_id = %s",
                    (res.document_id,),
                )
                row = await cur.fetchone()
                assert (
                    row is not None
                    and row["n"] == job.progress["chunks_total"] == job.progress["embeds_done"] > 0
                )
            # each stored vector is the one its hash was taken of (vectors go in as arrays)
            cur = await conn.execute("SELECT embedding, vector_sha FROM docingest.document_chunks")
            stored = await cur.fetchall()
            assert stored and all(
                vector_sha(r["embedding"].to_numpy()) == r["vector_sha"] for r in stored
            )
            cur = await conn.execute(
                "SELECT chunk_id::text AS id, text FROM docingest.document_chunks ORDER BY chunk_id LIMIT 1"
            )
            target = await cur.fetchone()
            assert target is not None
            e = rt.embedder
            [q] = (await e.embed([target["text"]])).vectors
            args = {"query": target["text"], "query_vector": q, "model": e.model, "k": 5}
            args |= {"version": e.version, "mode": SearchMode.VECTOR}
            mine = await search(conn, user, **args)
            theirs = await search(conn, other, **args)
        assert len(mine) == 5
        assert mine[0]["chunk_id"] == target["id"] and mine[0]["score"] > 0.999
        assert [r["score"] for r in mine] == sorted((r["score"] for r in mine), reverse=True)
        assert theirs == []
        before = counts(dsn)
        async with pool.connection() as conn:
            again = await upload(conn, rt, user, PDFS[0])
        assert again.duplicate and again.document_id == results[0].document_id
        assert counts(dsn) == before
        # buffers are emptied by promotion
        assert before["document_chunk_buffer"] == before["document_vector_buffer"] == 0
    finally:
        await pool.close()


async def _claim(pool: object, worker: str) -> jobs.Job:
    async with pool.connection() as conn:  # type: ignore[attr-defined]
        job = await claim_one(conn, worker, lease_s=300)
    assert job is not None
    return job


async def _glossary_claimed(
    rt: Runtime, pool: Any, worker: str = "w", **chunk_sizes: int
) -> tuple[StageContext, jobs.Job]:
    """The glossary uploaded and claimed by `worker`, and the stage context it runs under (the
    runtime's parser and embedder; `chunk_sizes`: chunk_target_tokens, chunk_max_tokens)."""
    from docingest.bootstrap import parser

    async with pool.connection() as conn:
        await upload(conn, rt, uuid.uuid4(), GLOSSARY)
    ctx = StageContext(
        pool=pool, blobs=rt.blobs, parser=parser(rt.settings), embedder=rt.embedder,
        worker_id=worker, **chunk_sizes,
    )  # fmt: skip
    return ctx, await _claim(pool, worker)


async def test_every_stage_rerun_writes_nothing_new(dsn: str, tmp_path: Path) -> None:
    rt = make_runtime(dsn, tmp_path)
    pool = await open_pool(dsn)
    try:
        ctx, job = await _glossary_claimed(rt, pool)
        seen: list[JobStatus] = []
        while not job.status.is_terminal:
            status = job.status
            seen.append(status)
            stage = STAGES[status]
            job = await stage(ctx, job)
            after_first = counts(dsn)
            sha_first = _hashes(dsn)
            # rewind to the same status, re-claim, run the stage again
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(
                    "UPDATE docingest.upload_jobs SET status = %s, claimed_by = NULL, lease_expires_at = NULL"
                    " WHERE job_id = %s",
                    (status.value, job.job_id),
                )
            if status == JobStatus.EMBEDDINGS_STORED:
                break  # buffers are gone after promotion: finalize's rerun is checked below
            job = await stage(ctx, await _claim(pool, "w"))
            assert counts(dsn) == after_first, f"re-running {status} wrote rows"
            assert _hashes(dsn) == sha_first
        assert seen[0] == JobStatus.UPLOADED and JobStatus.EMBEDDING_IN_PROGRESS in seen
        # finalize re-run: the rewound job promotes nothing new (ON CONFLICT) and completes
        final_counts = counts(dsn)
        with psycopg.connect(dsn, autocommit=True) as c:
            n = c.execute("SELECT count(*) FROM docingest.document_chunks").fetchone()
        assert n is not None and n[0] == final_counts["document_chunks"] > 0
    finally:
        await pool.close()


def _hashes(dsn: str) -> list[tuple[str, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT chunk_id::text, chunk_sha, '' FROM docingest.document_chunk_buffer"
            " UNION ALL SELECT chunk_id::text, vector_sha, embed_model FROM docingest.document_vector_buffer"
            " UNION ALL SELECT chunk_id::text, chunk_sha, vector_sha FROM docingest.document_chunks ORDER BY 1, 2, 3"
        ).fetchall()
    return [tuple(r) for r in rows]


async def test_transient_embedding_failure_keeps_finished_batches(dsn: str, tmp_path: Path) -> None:
    rt = make_runtime(dsn, tmp_path)
    flaky = CountingEmbedder(
        rt.embedder.dimensions,
        fail_on_calls=[2],
        error=TransientError(ErrorCode.EMBEDDING_UNAVAILABLE, "503"),
    )
    flaky.max_batch_inputs = 4  # several micro-batches for one small document
    rt = dataclasses.replace(rt, embedder=flaky)
    embed_calls = {
        outcome: local(
            "docingest_external_call_seconds_count",
            service="embedder",
            operation="embed",
            outcome=outcome,
        )
        for outcome in ("ok", "failed")
    }
    retries = local("docingest_worker_retries_total", code="embedding_unavailable")
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
        await run_worker(rt, concurrency=1, once=True, handle_signals=False)
        # the failed request is timed and counted per service; the job is scheduled to retry.
        # The requests out beside the failure came back before it gave up.
        assert local("docingest_worker_retries_total", code="embedding_unavailable") == retries + 1
        calls = {
            outcome: local(
                "docingest_external_call_seconds_count",
                service="embedder",
                operation="embed",
                outcome=outcome,
            )
            - embed_calls[outcome]
            for outcome in ("ok", "failed")
        }
        assert calls["failed"] == 1 and 1 <= calls["ok"] <= WINDOWS_IN_FLIGHT
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
            assert job is not None
            assert job.status == JobStatus.EMBEDDING_IN_PROGRESS
            assert (
                job.retry_count == 1
                and job.last_error
                and job.last_error["code"] == "embedding_unavailable"
            )
            # every answered request was stored before the job gave up: the first, and the
            # ones out beside the failure (4 inputs each here)
            assert job.progress["embeds_done"] == flaky.inputs == 4 * calls["ok"]
            await conn.execute("UPDATE docingest.upload_jobs SET next_attempt_at = now()")
        await run_worker(rt, concurrency=1, once=True, handle_signals=False)
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
        assert job is not None and job.status == JobStatus.COMPLETE
        # nothing was paid for twice: the retry sent only what was still missing
        assert flaky.inputs == job.progress["chunks_total"]
    finally:
        await pool.close()


class RelayEmbedder(CountingEmbedder):
    """Request 2 fails, but only once request 3 is out; request 3 is answered a provider's
    latency after the job, having seen the failure, begins to wait for what it has out
    (`settling`): a job that did not wait would be gone by then."""

    def __init__(self, dimensions: int, settling: asyncio.Event) -> None:
        super().__init__(dimensions)
        self.entered = 0
        self.third_out = asyncio.Event()
        self.settling = settling

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.entered += 1
        if self.entered == 2:
            await asyncio.wait_for(self.third_out.wait(), DEADLINE_S)
            raise TransientError(ErrorCode.EMBEDDING_UNAVAILABLE, "503")
        if self.entered == 3:
            self.third_out.set()
            await asyncio.wait_for(self.settling.wait(), DEADLINE_S)
            await asyncio.sleep(PROVIDER_LATENCY_S)
        return await super().embed(texts)


async def test_a_failed_request_keeps_what_was_out_beside_it(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to a request out when another failed is paid for: the job waits for it and
    stores it before giving up, so the retry pays only for the failed request's texts."""
    settling = asyncio.Event()
    real_settle = EmbeddingBatcher.settle

    async def settle(self: EmbeddingBatcher, *args: Any, **kwargs: Any) -> None:
        settling.set()
        await real_settle(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingBatcher, "settle", settle)
    rt = make_runtime(dsn, tmp_path)
    relay = RelayEmbedder(rt.embedder.dimensions, settling)
    relay.max_batch_inputs = 4
    rt = dataclasses.replace(rt, embedder=relay)
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
        await asyncio.wait_for(
            run_worker(rt, concurrency=1, once=True, handle_signals=False), DEADLINE_S
        )
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
            assert job is not None and job.status == JobStatus.EMBEDDING_IN_PROGRESS
            # request 2 failed; 1, 3 and any other out beside it were answered and stored
            assert relay.entered == relay.calls + 1 and relay.calls >= 2
            assert relay.inputs == 4 * relay.calls == job.progress["embeds_done"]
            await conn.execute("UPDATE docingest.upload_jobs SET next_attempt_at = now()")
        await run_worker(rt, concurrency=1, once=True, handle_signals=False)
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
        assert job is not None and job.status == JobStatus.COMPLETE
        assert relay.inputs == job.progress["chunks_total"]  # nothing paid for twice
    finally:
        await pool.close()


class HeldFirstEmbedder(HashEmbedder):
    """Holds its first request until `release` is set (never, unless a test sets it) and
    answers the others, counting the texts it answered; `two_answered` once two requests
    were."""

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self.requests = 0
        self.answered = 0
        self.answered_requests = 0
        self.two_answered = asyncio.Event()
        self.release = asyncio.Event()
        self.held_answered = 0  # texts the held request was answered with

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.requests += 1
        if self.requests == 1:
            await self.release.wait()
            self.held_answered = len(texts)
        out = await super().embed(texts)
        self.answered += len(texts)
        self.answered_requests += 1
        if self.answered_requests == 2:
            self.two_answered.set()
        return out


async def _stopped_mid_embedding(
    dsn: str, tmp_path: Path, *, grace_s: float, answer_at_stop: bool
) -> tuple[HeldFirstEmbedder, int, int]:
    """A real BaseWorker embeds GLOSSARY, 4 inputs per request, its first request held at
    the provider; once two later requests were answered it is told to stop (what SIGTERM
    does). `answer_at_stop`: the held request is answered as soon as the worker stops
    waiting. Checks that the job was given back with its retry budget untouched and that
    another worker then completed it paying for no text twice. Returns the embedder, the
    vectors the stopped worker had stored and the texts answered by then."""
    from docingest.bootstrap import parser

    rt = make_runtime(dsn, tmp_path)
    held = HeldFirstEmbedder(rt.embedder.dimensions)
    held.max_batch_inputs = 4
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
        gate = EmbeddingGate(pool, held, actor="worker:stopping")
        batcher = EmbeddingBatcher(gate, max_inputs=held.max_batch_inputs)
        if answer_at_stop:
            stop_waiting = batcher.stop_waiting

            def answer_once_stopping(in_flight_s: float) -> None:
                stop_waiting(in_flight_s)
                held.release.set()  # the provider answers the request that was out

            batcher.stop_waiting = answer_once_stopping  # type: ignore[method-assign]
        ctx = StageContext(
            pool=pool, blobs=rt.blobs, parser=parser(rt.settings), embedder=held,
            worker_id="stopping", embed_gate=gate, embed_batcher=batcher,
        )  # fmt: skip
        worker = BaseWorker(ctx, dsn=dsn, options=WorkerOptions(shutdown_grace_s=grace_s))
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(held.two_answered.wait(), DEADLINE_S)
        worker.request_stop()  # what SIGTERM does
        await asyncio.wait_for(running, DEADLINE_S)
        await batcher.aclose()
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
        assert job is not None and job.status == JobStatus.EMBEDDING_IN_PROGRESS
        assert job.claimed_by is None and job.retry_count == 0
        stored, answered = int(job.progress["embeds_done"]), held.answered
        await run_worker(
            dataclasses.replace(rt, embedder=held), concurrency=1, once=True, handle_signals=False
        )
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
        assert job is not None and job.status == JobStatus.COMPLETE
        assert held.answered == job.progress["chunks_total"]  # nothing answered twice
        return held, stored, answered
    finally:
        await pool.close()


async def test_a_stopping_worker_stores_what_was_answered_and_gives_the_job_back(
    dsn: str, tmp_path: Path
) -> None:
    """SIGTERM while a request is held at the provider: the job's later requests were answered
    (and paid for) but wait behind the held one's window. Before the grace period ends the
    job stops waiting, stores them and is given back with its retry budget untouched, so the
    next worker pays only for the held request's texts."""
    held, stored, answered = await _stopped_mid_embedding(
        dsn, tmp_path, grace_s=2.0, answer_at_stop=False
    )
    # every answered request (all but the held one) was stored before the job was given back
    assert stored == answered >= 8
    assert held.held_answered == 0


async def test_a_request_answered_after_the_stop_began_is_stored_not_paid_again(
    dsn: str, tmp_path: Path
) -> None:
    """SIGTERM while a request is out: once the worker stops waiting, nothing more is sent,
    but the request already out still counts. Its answer arrives after the stop began; the
    job stores it with the others and is given back, and the next worker pays only for the
    texts that were never sent."""
    # grace 4 s: the last 1 s for storing, its first half for the request still out
    held, stored, answered = await _stopped_mid_embedding(
        dsn, tmp_path, grace_s=4.0, answer_at_stop=True
    )
    # every answered text was stored, those of the request answered after the stop too
    assert held.held_answered == held.max_batch_inputs
    assert stored == answered >= 12


async def test_a_transient_failure_past_the_retry_budget_is_a_dead_letter(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path, DOCINGEST_MAX_RETRIES="0")
    down = TransientError(ErrorCode.EMBEDDING_UNAVAILABLE, "503")
    rt = dataclasses.replace(
        rt, embedder=CountingEmbedder(rt.embedder.dimensions, fail_on_calls=[1], error=down)
    )
    labels = {"status": "failed_embedding", "code": "retries_exhausted"}
    dead_before = local("docingest_worker_jobs_failed_total", **labels)
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
        await run_worker(rt, concurrency=1, once=True, handle_signals=False)
        async with pool.connection() as conn:
            job = await jobs.get(conn, res.job_id)
    finally:
        await pool.close()
    assert job is not None and job.status == JobStatus.FAILED_EMBEDDING
    assert job.last_error is not None and job.last_error["code"] == "retries_exhausted"
    assert local("docingest_worker_jobs_failed_total", **labels) == dead_before + 1


@pytest.mark.parametrize(
    "stop_at", [JobStatus.PARSED, JobStatus.CHUNKS_STORED, JobStatus.EMBEDDING_IN_PROGRESS]
)
async def test_stopped_job_resumes_without_repeating_work(
    dsn: str, tmp_path: Path, stop_at: JobStatus
) -> None:
    """A job abandoned at a status (worker gone, lease expired) is finished by another worker."""
    # both workers must embed with one model: the survivor counts through the hash embedder
    rt = make_runtime(dsn, tmp_path, DOCINGEST_EMBEDDER="hash")
    pool = await open_pool(dsn)
    try:
        ctx, job = await _glossary_claimed(rt, pool, "dead")
        while job.status != stop_at:
            job = await STAGES[job.status](ctx, job)
        with psycopg.connect(dsn, autocommit=True) as c:  # the dead worker's lease runs out
            c.execute("UPDATE docingest.upload_jobs SET lease_expires_at = now() - interval '1 s'")
        counting = CountingEmbedder(rt.embedder.dimensions)
        ctx2 = dataclasses.replace(ctx, embedder=counting, worker_id="alive")
        worker = BaseWorker(ctx2, dsn=dsn, options=WorkerOptions(concurrency=1))
        await worker.run(once=True)
        async with pool.connection() as conn:
            done = await jobs.get(conn, job.job_id)
        assert done is not None and done.status == JobStatus.COMPLETE
        assert done.retry_count == 0
        # every chunk embedded exactly once by the survivor (the dead worker embedded none)
        assert counting.inputs == done.progress["chunks_total"] > 0
    finally:
        await pool.close()


def _words_state(dsn: str) -> tuple[int, int, int]:
    """(buffered chunks, with words, with the words search would parse from their text)."""
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT count(*), count(text_words),"
            " count(*) FILTER (WHERE text_words = to_tsvector('english', text))"
            " FROM docingest.document_chunk_buffer"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _searchable_words(dsn: str, document_id: uuid.UUID) -> tuple[int, int]:
    """(searchable rows of the document, with the words and owner's lexeme search expects)."""
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE text_tsv = to_tsvector('english', text)"
            "   || array_to_tsvector(ARRAY['user:' || user_id::text]))"
            " FROM docingest.document_chunks WHERE document_id = %s",
            (document_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_words_are_parsed_while_embedding_and_never_missing_when_searchable(
    dsn: str, tmp_path: Path
) -> None:
    """Migration 0019: chunks are buffered without their words, the embedding stage parses
    them window by window, and a row still without words (its worker died in between) gets
    them at promotion."""
    rt = make_runtime(dsn, tmp_path)
    pool = await open_pool(dsn)
    try:
        ctx, job = await _glossary_claimed(rt, pool, chunk_target_tokens=10, chunk_max_tokens=12)
        while job.status != JobStatus.CHUNKS_STORED:
            job = await STAGES[job.status](ctx, job)
        buffered, with_words, _ = _words_state(dsn)
        assert buffered > rt.embedder.max_batch_inputs and with_words == 0  # several windows
        while job.status != JobStatus.EMBEDDINGS_STORED:
            job = await STAGES[job.status](ctx, job)
        assert _words_state(dsn) == (buffered, buffered, buffered)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(
                "UPDATE docingest.document_chunk_buffer SET text_words = NULL"
                " WHERE chunk_ord % 2 = 0"
            )
        job = await STAGES[job.status](ctx, job)
        assert job.status == JobStatus.COMPLETE
        assert _searchable_words(dsn, job.document_id) == (buffered, buffered)
    finally:
        await pool.close()


async def _many_chunks_at_chunking(
    dsn: str, tmp_path: Path, pool: Any, limits: WorkLimits
) -> tuple[StageContext, jobs.Job]:
    """A placed document of ~1,200 tiny chunks (several insert batches), claimed and moved to
    `chunking`, with the stage context to chunk it under `limits`."""
    rt = make_runtime(dsn, tmp_path)
    markdown = "\n\n".join(f"# Benefit {i}\n\nCopay for visit {i} is $25." for i in range(600))
    async with pool.connection() as conn:
        await place_parsed(conn, rt.blobs, uuid.uuid4(), markdown)
    ctx = StageContext(
        pool=pool, blobs=rt.blobs, parser=None, embedder=rt.embedder,  # type: ignore[arg-type]
        worker_id="w", chunk_target_tokens=8, chunk_max_tokens=16, work=limits,
    )  # fmt: skip
    return ctx, await STAGES[JobStatus.PARSE_VALIDATED](ctx, await _claim(pool, "w"))


async def test_chunk_rows_go_in_as_one_statement_and_come_back_as_given(
    dsn: str, tmp_path: Path
) -> None:
    """`insert_chunk_buffer` sends arrays: texts and metadata with what an array literal
    would have to escape come back byte for byte, and a second insert adds nothing."""
    from docingest.store import chunks as chunk_store

    rt = make_runtime(dsn, tmp_path)
    texts = ['quote " and \\ backslash', "{braces, commas}", "NULL", "", "é ß 🙂 \t tab"]
    rows = [
        chunk_store.ChunkRow(
            uuid.uuid4(), n, f"sha-{n}", text, {"page_start": n, "heading": ['a "b"', None]}
        )
        for n, text in enumerate(texts)
    ]
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            res = await upload(conn, rt, uuid.uuid4(), GLOSSARY)
            added = await chunk_store.insert_chunk_buffer(conn, res.document_id, "c", "1", rows)
            again = await chunk_store.insert_chunk_buffer(conn, res.document_id, "c", "1", rows)
            cur = await conn.execute(
                "SELECT chunk_id, chunk_ord, chunk_sha, text, meta"
                " FROM docingest.document_chunk_buffer WHERE document_id = %s ORDER BY chunk_ord",
                (res.document_id,),
            )
            stored = [chunk_store.ChunkRow(**r) for r in await cur.fetchall()]
        assert (added, again) == (len(rows), 0)
        assert stored == rows
    finally:
        await pool.close()


async def test_a_chunk_cap_hit_midway_leaves_no_chunk_rows(dsn: str, tmp_path: Path) -> None:
    """Chunk rows go to Postgres while the chunker cuts the rest; the cap found after the first
    rows were written fails the job and rolls every one of them back."""
    pool = await open_pool(dsn)
    try:
        cap = CHUNK_ROWS_PER_INSERT + 50
        limits = dataclasses.replace(WorkLimits(), max_chunks=cap)
        ctx, job = await _many_chunks_at_chunking(dsn, tmp_path, pool, limits)
        with pytest.raises(PermanentError) as failed:
            await STAGES[JobStatus.CHUNKING](ctx, job)
        assert failed.value.code == ErrorCode.TOO_MANY_CHUNKS
        assert _words_state(dsn)[0] == 0
        ctx = dataclasses.replace(ctx, work=dataclasses.replace(WorkLimits(), max_chunks=2000))
        done = await STAGES[JobStatus.CHUNKING](ctx, job)
        assert done.status == JobStatus.CHUNKS_STORED
        assert _words_state(dsn)[0] == done.progress["chunks_total"] > cap
    finally:
        await pool.close()


async def test_a_failed_word_parse_fails_the_attempt_and_search_still_gets_the_words(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docingest.store import chunks as chunk_store

    rt = make_runtime(dsn, tmp_path)
    pool = await open_pool(dsn)
    try:
        ctx, job = await _glossary_claimed(rt, pool)
        while job.status != JobStatus.EMBEDDING_IN_PROGRESS:
            job = await STAGES[job.status](ctx, job)
        parse_words = chunk_store.parse_words

        async def database_gone(conn: object, chunk_ids: object) -> None:
            raise psycopg.OperationalError("connection lost")

        monkeypatch.setattr(chunk_store, "parse_words", database_gone)
        with pytest.raises(psycopg.OperationalError):
            await STAGES[job.status](ctx, job)
        async with pool.connection() as conn:
            unchanged = await jobs.get(conn, job.job_id)
        assert unchanged is not None and unchanged.status == JobStatus.EMBEDDING_IN_PROGRESS
        monkeypatch.setattr(chunk_store, "parse_words", parse_words)
        job = await STAGES[job.status](ctx, job)  # every vector was stored: nothing to send
        assert job.status == JobStatus.EMBEDDINGS_STORED
        buffered, with_words, _ = _words_state(dsn)
        assert buffered > 0 and with_words == 0
        job = await STAGES[job.status](ctx, job)  # the promotion parses what is missing
        assert job.status == JobStatus.COMPLETE
        assert _searchable_words(dsn, job.document_id) == (buffered, buffered)
    finally:
        await pool.close()


async def test_a_failed_chunk_insert_midway_rolls_back_and_the_retry_stores_all(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docingest.store import chunks as chunk_store

    pool = await open_pool(dsn)
    try:
        ctx, job = await _many_chunks_at_chunking(dsn, tmp_path, pool, WorkLimits())
        insert = chunk_store.insert_chunk_buffer
        calls = 0

        async def fails_second(*args: object, **kwargs: object) -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise psycopg.OperationalError("connection lost")
            return await insert(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(chunk_store, "insert_chunk_buffer", fails_second)
        with pytest.raises(psycopg.OperationalError):
            await STAGES[JobStatus.CHUNKING](ctx, job)
        assert calls == 2 and _words_state(dsn)[0] == 0
        monkeypatch.setattr(chunk_store, "insert_chunk_buffer", insert)
        done = await STAGES[JobStatus.CHUNKING](ctx, job)
        assert done.status == JobStatus.CHUNKS_STORED
        assert _words_state(dsn)[0] == done.progress["chunks_total"] > 2 * CHUNK_ROWS_PER_INSERT
    finally:
        await pool.close()
