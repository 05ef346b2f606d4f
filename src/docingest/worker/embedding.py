"""embedding_in_progress -> embeddings_stored, paying for each distinct text once.

The document's chunks without a vector are walked in order, one window of at most
`max_batch_inputs` chunks at a time:
1. chunks whose exact text already has a vector for this model/version (any document, or an
   earlier window of this one) copy it;
2. the rest are grouped by text (chunk_sha): each distinct text is sent once and its vector
   fanned out to every chunk carrying it;
3. every answered request's vectors, the progress counters (with tokens, requests and
   estimated cost) and an `embedding.batch` event commit together before the next request.

A batch the provider refuses (HTTP 400) is split in halves until the refused input(s) are
found; everything else is embedded and stored, then the job fails with
`embedding_input_rejected` naming the chunk ordinals (never their text). A retry after the
cause is fixed pays only for what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import uuid4

from docingest.domain.errors import ErrorCode, PermanentError
from docingest.domain.pricing import cost_usd
from docingest.domain.states import JobStatus
from docingest.pipeline import chunker, hashing
from docingest.pipeline.batching import plan_batches
from docingest.pipeline.tokens import count_tokens
from docingest.store import chunks as chunk_store
from docingest.store import jobs
from docingest.store.chunks import ChunkRow, VectorRow
from docingest.store.db import DictConn
from docingest.store.records import Job
from docingest.worker import metrics
from docingest.worker.context import StageContext
from docingest.worker.embed_gate import EmbeddingGate, Sent
from docingest.worker.stage_io import event

_CHUNKER = (chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION)
MAX_ORDS_IN_MESSAGE = 10


@dataclass(frozen=True)
class _Text:
    """One distinct chunk text still to embed."""

    sha: str
    text: str
    tokens: int


@dataclass
class Spend:
    """What this job's embedding has cost so far (kept in `progress`, across attempts). The
    cost is derived from the tokens, so it stays exact however often the job resumes."""

    price_per_mtok: float | None
    requests: int = 0
    tokens: int = 0
    reused: int = 0
    provider_s: float = 0.0  # time the provider took to answer, summed over requests

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
            "embed_provider_s": round(self.provider_s, 3),
        }


def _tokens(row: ChunkRow) -> int:
    return int(str(row.meta.get("tokens", 0))) or count_tokens(row.text)


def describe_ords(ords: Sequence[int]) -> str:
    shown = ", ".join(str(o) for o in sorted(ords)[:MAX_ORDS_IN_MESSAGE])
    more = len(ords) - MAX_ORDS_IN_MESSAGE
    return shown + (f" (+{more} more)" if more > 0 else "")


class DocumentEmbedding:
    def __init__(
        self, ctx: StageContext, job: Job, gate: EmbeddingGate, model: str, version: str
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.gate = gate
        self.model = model
        self.version = version
        self.spend = Spend.from_progress(job.progress, gate.price)
        self.refused_shas: set[str] = set()
        self.refused_ords: list[int] = []

    async def run(self) -> Job:
        cursor = -1
        while True:
            async with self.ctx.pool.connection() as conn:
                window = await chunk_store.missing_vectors(
                    conn,
                    self.job.document_id,
                    _CHUNKER,
                    self.model,
                    self.version,
                    self.ctx.embedder.max_batch_inputs,
                    after_ord=cursor,
                )
            if not window:
                break
            cursor = window[-1].chunk_ord
            await self._embed_window(window)
        if self.refused_ords:
            raise PermanentError(
                ErrorCode.EMBEDDING_INPUT_REJECTED,
                "the embedding provider refused chunk ord "
                f"{describe_ords(self.refused_ords)}; every other chunk's vector is stored",
            )
        return await self._finish()

    async def _embed_window(self, window: list[ChunkRow]) -> None:
        async with self.ctx.pool.connection() as conn, conn.transaction():
            reused = await chunk_store.reuse_vectors(
                conn,
                self.job.document_id,
                self.model,
                self.version,
                uuid4(),
                chunk_ids=[r.chunk_id for r in window],
            )
            if reused:
                self.spend.reused += len(reused)
                metrics.EMBED_REUSED.labels(model=self.model).inc(len(reused))
                await self._progress(conn)
        by_sha: dict[str, list[ChunkRow]] = {}
        for row in window:
            if row.chunk_id in reused:
                continue
            if row.chunk_sha in self.refused_shas:
                self.refused_ords.append(row.chunk_ord)
                continue
            by_sha.setdefault(row.chunk_sha, []).append(row)
        texts = [_Text(sha, rows[0].text, _tokens(rows[0])) for sha, rows in by_sha.items()]
        await self._embed(texts, by_sha)

    async def _embed(self, texts: list[_Text], by_sha: Mapping[str, list[ChunkRow]]) -> None:
        """Send `texts` in as few requests as the limits allow; split refused batches."""
        while texts:
            first = plan_batches(
                [t.tokens for t in texts],
                max_inputs=self.ctx.embedder.max_batch_inputs,
                max_tokens=self.gate.max_request_tokens,
            )[0]
            batch = texts[: len(first)]
            sent = await self.gate.send([t.text for t in batch], [t.tokens for t in batch])
            done, texts = batch[: sent.count], texts[sent.count :]
            if sent.vectors is not None:
                await self._store(done, sent, by_sha)
            elif len(done) == 1:
                self.refused_shas.add(done[0].sha)
                self.refused_ords.extend(r.chunk_ord for r in by_sha[done[0].sha])
            else:
                half = len(done) // 2
                await self._embed(done[:half], by_sha)
                await self._embed(done[half:], by_sha)

    async def _store(
        self, done: list[_Text], sent: Sent, by_sha: Mapping[str, list[ChunkRow]]
    ) -> None:
        assert sent.vectors is not None
        if len(sent.vectors) != len(done):
            raise PermanentError(
                ErrorCode.EMBEDDING_REJECTED, "provider returned a wrong vector count"
            )
        rows = [
            VectorRow(row.chunk_id, vector, hashing.vector_sha(vector))
            for text, vector in zip(done, sent.vectors, strict=True)
            for row in by_sha[text.sha]
        ]
        self.spend.requests += 1
        self.spend.tokens += sent.tokens
        self.spend.provider_s += sent.provider_s
        batch_id = uuid4()
        async with self.ctx.pool.connection() as conn, conn.transaction():
            await chunk_store.insert_vectors(
                conn, self.job.document_id, self.model, self.version, batch_id, rows
            )
            await self._progress(conn)
            await event(
                conn,
                self.ctx.worker_id,
                self.job,
                "embedding.batch",
                batch_id=str(batch_id),
                inputs=len(done),
                vectors=len(rows),
                tokens=sent.tokens,
                cost_usd=round(sent.cost_usd, 8),
            )

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
            moved = await jobs.transition(
                conn,
                job,
                self.ctx.worker_id,
                JobStatus.EMBEDDINGS_STORED,
                sets={"progress": progress},
            )
            await event(
                conn,
                self.ctx.worker_id,
                moved,
                "job.embeddings_stored",
                vectors=done,
                **self.spend.progress(),
            )
        return moved
