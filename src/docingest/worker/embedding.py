"""embedding_in_progress -> embeddings_stored, paying for each distinct text once.

The document's chunks without a vector are walked in order, one window of at most
`max_batch_inputs` chunks at a time, with up to `WINDOWS_IN_FLIGHT` windows out at once:
1. chunks whose exact text already has a vector for this model/version (any document, or an
   earlier window of this one) copy it;
2. the rest are grouped by text (chunk_sha) and handed to the worker's `EmbeddingBatcher`,
   which fills each request from every embedding job the worker holds (a text queued by
   another job is sent once for both);
3. when a window's texts are answered, its vectors, the progress counters (with tokens,
   requests and estimated cost) and one `embedding.batch` event per request that carried
   them commit together, in this job's own transaction, windows in order.

Meanwhile each window's words are parsed for search (`chunk_store.parse_words`, its own
short transaction on another connection, started once the window is handed over), so
Postgres does that work while the requests are out, not before the first one is sent.

A text the provider refuses (HTTP 400; the batcher splits requests until it finds it) fails
only this job: everything else is embedded and stored, then the job fails with
`embedding_input_rejected` naming the chunk ordinals (never their text). A retry after the
cause is fixed pays only for what is missing.

A request that fails (5xx, timeout, circuit open) fails the attempt, but first the job lets
its other requests in flight come back, since they are paid for, and stores every answered
text; what was not sent yet is withdrawn. So the retry, too, pays only for what is missing
(`docingest validate` once saw 99 inputs billed twice when an injected 500 left a request
of the same job out).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from docingest.clients.embedders import Vector
from docingest.domain.errors import ErrorCode, PermanentError
from docingest.domain.pricing import cost_usd
from docingest.domain.states import JobStatus
from docingest.pipeline import chunker, hashing
from docingest.pipeline.stored_vector import NotStorable, as_stored
from docingest.pipeline.tokens import count_tokens
from docingest.store import chunks as chunk_store
from docingest.store import jobs
from docingest.store.chunks import ChunkRow, VectorRow
from docingest.store.db import DictConn
from docingest.store.records import Job
from docingest.worker import metrics
from docingest.worker.context import StageContext
from docingest.worker.embed_batcher import Answer, EmbeddingBatcher, Owner, Text
from docingest.worker.stage_io import event

_CHUNKER = (chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION)
MAX_ORDS_IN_MESSAGE = 10
#: windows of one document out at once: with the batcher's two requests out, a third window
#: is already read and queued, so the next request leaves the moment one is answered rather
#: than after the answered window is stored and the next one read (memory: at most this
#: many windows per job)
WINDOWS_IN_FLIGHT = 3
#: after a failed request, how long the job waits for its other requests in flight (their
#: answers are paid for; each request has its own deadline, this bounds their sum)
SETTLE_TIMEOUT_S = 60.0


@dataclass
class Spend:
    """What this job's embedding has cost so far (kept in `progress`, across attempts). The
    cost is derived from the tokens, so it stays exact however often the job resumes."""

    price_per_mtok: float | None
    requests: int = 0
    tokens: int = 0
    reused: int = 0
    provider_s: float = 0.0  # earlier attempts' time waiting on the provider
    spans: list[tuple[float, float]] = field(default_factory=list)  # this attempt's requests

    @classmethod
    def from_progress(cls, progress: Mapping[str, int], price: float | None) -> Spend:
        return cls(
            price,
            requests=progress.get("embed_requests", 0),
            tokens=progress.get("embed_tokens", 0),
            reused=progress.get("embeds_reused", 0),
            provider_s=progress.get("embed_provider_s", 0.0),
        )

    def progress(self) -> dict[str, float]:
        return {
            "embed_requests": self.requests,
            "embed_tokens": self.tokens,
            "embed_cost_usd": round(cost_usd(self.tokens, self.price_per_mtok), 8),
            "embeds_reused": self.reused,
            "embed_provider_s": round(self.provider_s + covered_seconds(self.spans), 3),
        }


def covered_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) spans: time the job waited on the
    provider, however many of its requests were in flight together."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _tokens(row: ChunkRow) -> int:
    return int(str(row.meta.get("tokens", 0))) or count_tokens(row.text)


def _storable(vector: Vector | None) -> Vector:
    assert vector is not None
    try:
        return as_stored(vector)
    except NotStorable:
        raise PermanentError(
            ErrorCode.EMBEDDING_REJECTED, "provider returned a vector outside the halfvec range"
        ) from None


def describe_ords(ords: Sequence[int]) -> str:
    shown = ", ".join(str(o) for o in sorted(ords)[:MAX_ORDS_IN_MESSAGE])
    more = len(ords) - MAX_ORDS_IN_MESSAGE
    return shown + (f" (+{more} more)" if more > 0 else "")


@dataclass
class _Window:
    """One window handed to the batcher: its job's membership, its chunks by text, and the
    texts' futures."""

    owner: Owner
    by_sha: dict[str, list[ChunkRow]]
    texts: list[Text]
    futures: list[asyncio.Future[Answer]]


def _answered(future: asyncio.Future[Answer]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _any_failed(out: deque[_Window]) -> bool:
    return any(f.done() and not _answered(f) for window in out for f in window.futures)


class DocumentEmbedding:
    def __init__(
        self, ctx: StageContext, job: Job, batcher: EmbeddingBatcher, model: str, version: str
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.batcher = batcher
        self.model = model
        self.version = version
        self.spend = Spend.from_progress(job.progress, batcher.gate.price)
        self.refused_shas: set[str] = set()
        self.refused_ords: list[int] = []
        self.parsing_words: list[asyncio.Future[None]] = []

    async def run(self) -> Job:
        owner = self.batcher.join()
        try:
            await self._embed_all(owner)
        except BaseException:
            await self._words_parsed()  # the stage's own error is the one to report
            raise
        finally:
            self.batcher.leave(owner)
        if (failed := await self._words_parsed()) is not None:
            raise failed
        if self.refused_ords:
            raise PermanentError(
                ErrorCode.EMBEDDING_INPUT_REJECTED,
                "the embedding provider refused chunk ord "
                f"{describe_ords(self.refused_ords)}; every other chunk's vector is stored",
            )
        return await self._finish()

    async def _embed_all(self, owner: Owner) -> None:
        limit = self.ctx.embedder.max_batch_inputs
        cursor = -1
        out: deque[_Window] = deque()
        while True:
            while owner.more and len(out) < WINDOWS_IN_FLIGHT and not _any_failed(out):
                async with self.ctx.pool.connection() as conn:
                    rows = await chunk_store.missing_vectors(
                        conn,
                        self.job.document_id,
                        _CHUNKER,
                        self.model,
                        self.version,
                        limit,
                        after_ord=cursor,
                    )
                if len(rows) < limit:
                    owner.more = False
                if not rows:
                    break
                cursor = rows[-1].chunk_ord
                out.append(await self._hand_over(owner, rows))
            if not out:
                return
            window = out.popleft()
            try:
                answers = await self.batcher.wait(owner, window.futures)
            except Exception:
                await self._keep_answered(owner, [window, *out])
                raise
            await self._store(window, list(zip(window.texts, answers, strict=True)))

    async def _parse_words(self, rows: Sequence[ChunkRow]) -> None:
        async with self.ctx.pool.connection() as conn:
            await chunk_store.parse_words(conn, [r.chunk_id for r in rows])

    async def _words_parsed(self) -> BaseException | None:
        """Wait for the windows' word parsing; the first failure (the database went away),
        which fails the attempt like any other write of the stage."""
        results = await asyncio.gather(*self.parsing_words, return_exceptions=True)
        self.parsing_words.clear()
        return next((r for r in results if isinstance(r, BaseException)), None)

    async def _keep_answered(self, owner: Owner, windows: Sequence[_Window]) -> None:
        """A request failed: let the job's other requests in flight come back (they are paid
        for), then store every text answered so far, window by window, so the retry pays
        only for what is missing. Texts not sent yet are withdrawn."""
        futures = [f for window in windows for f in window.futures]
        await self.batcher.settle(owner, futures, SETTLE_TIMEOUT_S)
        for window in windows:
            answered = [
                (text, future.result())
                for text, future in zip(window.texts, window.futures, strict=True)
                if _answered(future)
            ]
            if answered:
                await self._store(window, answered)

    async def _hand_over(self, owner: Owner, rows: list[ChunkRow]) -> _Window:
        """Reuse what is already embedded; queue the window's other distinct texts."""
        with self.batcher.lookup():
            async with self.ctx.pool.connection() as conn, conn.transaction():
                reused = await chunk_store.reuse_vectors(
                    conn,
                    self.job.document_id,
                    self.model,
                    self.version,
                    uuid4(),
                    chunk_ids=[r.chunk_id for r in rows],
                )
                if reused:
                    self._count_reused(len(reused))
                    await self._progress(conn)
            by_sha: dict[str, list[ChunkRow]] = {}
            for row in rows:
                if row.chunk_id in reused:
                    continue
                if row.chunk_sha in self.refused_shas:
                    self.refused_ords.append(row.chunk_ord)
                    continue
                by_sha.setdefault(row.chunk_sha, []).append(row)
            texts = [Text(sha, group[0].text, _tokens(group[0])) for sha, group in by_sha.items()]
            window = _Window(owner, by_sha, texts, self.batcher.submit(owner, texts))
        self.parsing_words.append(asyncio.ensure_future(self._parse_words(rows)))
        return window

    def _count_reused(self, n: int) -> None:
        self.spend.reused += n
        metrics.EMBED_REUSED.labels(model=self.model).inc(n)

    async def _store(self, window: _Window, answered: Sequence[tuple[Text, Answer]]) -> None:
        """The window's answered texts (all of them, unless a request failed): their vectors,
        progress and one event per request, in one transaction."""
        by_request: dict[UUID, list[tuple[Text, Answer]]] = {}
        for text, answer in answered:
            if answer.vector is None:
                self.refused_shas.add(text.sha)
                self.refused_ords.extend(r.chunk_ord for r in window.by_sha[text.sha])
                continue
            by_request.setdefault(answer.batch_id, []).append((text, answer))
        if not by_request:
            return
        async with self.ctx.pool.connection() as conn, conn.transaction():
            for batch_id, answered in by_request.items():
                rows = [
                    VectorRow(row.chunk_id, text.sha, vector, hashing.vector_sha(vector))
                    for text, answer in answered
                    for vector in (_storable(answer.vector),)
                    for row in window.by_sha[text.sha]
                ]
                await chunk_store.insert_vectors(
                    conn, self.job.document_id, self.model, self.version, batch_id, rows
                )
                paid = sum(text.tokens for text, answer in answered if answer.paid)
                shared = sum(len(window.by_sha[t.sha]) for t, a in answered if not a.paid)
                if paid:
                    self.spend.requests += 1
                    self.spend.tokens += paid
                self.spend.spans.append(answered[0][1].provider_span)  # this job waited on it
                if shared:
                    self._count_reused(shared)
                await event(
                    conn,
                    self.ctx.worker_id,
                    self.job,
                    "embedding.batch",
                    batch_id=str(batch_id),
                    inputs=len(answered),
                    vectors=len(rows),
                    tokens=paid,
                    cost_usd=round(cost_usd(paid, self.spend.price_per_mtok), 8),
                )
            await self._progress(conn)
        self.batcher.stored(window.owner, [text for text, _ in answered])

    async def _progress(self, conn: DictConn) -> None:
        done = await chunk_store.count_vectors(conn, self.job.document_id, self.model, self.version)
        await jobs.set_progress(
            conn, self.job, self.ctx.worker_id, embeds_done=done, **self.spend.progress()
        )

    async def _finish(self) -> Job:
        job, model, version = self.job, self.model, self.version
        async with self.ctx.pool.connection() as conn, conn.transaction():
            done = await chunk_store.count_vectors(conn, job.document_id, model, version)
            total = job.progress.get("chunks_total", 0)
            if done != total:
                raise PermanentError(
                    ErrorCode.INTEGRITY_ERROR, "vector count does not match chunk count"
                )
            progress = {
                **job.progress,
                **self.spend.progress(),
                "embeds_total": total,
                "embeds_done": done,
            }
            return await jobs.transition(
                conn,
                job,
                self.ctx.worker_id,
                JobStatus.EMBEDDINGS_STORED,
                sets={"progress": progress},
                event=jobs.worker_event(self.ctx.worker_id, vectors=done, **self.spend.progress()),
            )
