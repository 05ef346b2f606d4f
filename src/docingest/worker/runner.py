"""Run a BaseWorker with its pool and signal handling (used by `docingest worker`,
`docingest ingest` and tests)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import anyio

from docingest.bootstrap import Runtime, parser
from docingest.clients.local_parser import LocalParser
from docingest.config import Settings
from docingest.domain.circuit import BreakerPolicy
from docingest.domain.rate_budget import Limits
from docingest.domain.retry import RetryPolicy
from docingest.pipeline import tokens
from docingest.store import at_rest
from docingest.store.db import open_pool
from docingest.worker import remote_parse
from docingest.worker.base import BaseWorker, WorkerOptions, new_worker_id
from docingest.worker.breaker import Breaker
from docingest.worker.context import CallbackSettings, StageContext
from docingest.worker.embed_batcher import EmbeddingBatcher
from docingest.worker.embed_gate import EmbeddingGate


def breaker_policy(settings: Settings) -> BreakerPolicy:
    """DOCINGEST_CIRCUIT_FAILURES, DOCINGEST_CIRCUIT_COOLDOWN_SECONDS (every service) and
    DOCINGEST_EMBED_QUOTA_COOLDOWN_SECONDS (the embedder's quota cool-down)."""
    return BreakerPolicy(
        failure_threshold=settings.circuit_failures,
        cooldown_s=float(settings.circuit_cooldown_s),
        quota_cooldown_s=float(settings.embed_quota_cooldown_s),
    )


#: job slots of one `docingest worker` process unless DOCINGEST_WORKER_CONCURRENCY says otherwise
DEFAULT_CONCURRENCY = 2


def pool_size(concurrency: int) -> int:
    """Connections a worker process may open: two per job slot (a stage's transaction and
    its heartbeat) plus two (claims, hand-backs)."""
    return concurrency * 2 + 2


async def run_worker(
    rt: Runtime,
    *,
    concurrency: int = 1,
    max_embedding_jobs: int = WorkerOptions.max_embedding_jobs,
    once: bool = False,
    until: Callable[[], Awaitable[bool]] | None = None,
    handle_signals: bool = True,
    poll_interval_s: float = 2.0,
    callback_wait_s: float | None = None,
) -> int:
    """Work until stopped (SIGTERM/SIGINT), drained (`once`) or `until()` holds. Returns the
    number of jobs this worker brought to a terminal status. `callback_wait_s` overrides
    DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS (how long a remote parse waits for its callback
    before the worker polls the parser)."""
    at_rest.report(rt.at_rest)
    # The tokenizer costs ~0.3 s of CPU to build: paid before this worker announces itself,
    # not inside its first job's chunking (or, with several workers starting at once, all
    # of their first jobs at the same moment on the same cores).
    await asyncio.to_thread(tokens.get_encoding)
    anyio.Event()  # anyio loads its asyncio backend lazily: here, not in the first HTTP call
    doc_parser = parser(rt.settings)
    if isinstance(doc_parser, LocalParser):
        doc_parser.start()  # its parse server imports PDFium now, not in the first job
    pool = await open_pool(
        rt.dsn,
        min_size=1,
        max_size=pool_size(concurrency),
        name="docingest-worker",
        statement_timeout_s=rt.settings.work.statement_timeout_s,
        plan_once=True,
    )
    try:
        e = rt.embedder
        worker_id = new_worker_id()
        policy = breaker_policy(rt.settings)
        gate = EmbeddingGate(
            pool,
            e,
            limits=Limits(rpm=rt.settings.embed_rpm, tpm=rt.settings.embed_tpm),
            breaker=policy,
            price_per_mtok_usd=rt.settings.embed_price_per_mtok,
            actor=f"worker:{worker_id}",
        )
        ctx = StageContext(
            pool=pool,
            blobs=rt.blobs,
            parser=doc_parser,
            embedder=e,
            worker_id=worker_id,
            callbacks=CallbackSettings(
                public_url=rt.settings.public_url,
                webhook_secret=rt.webhook_secret,
                wait_s=(
                    float(rt.settings.parse_callback_timeout_s)
                    if callback_wait_s is None
                    else callback_wait_s
                ),
            ),
            embed_gate=gate,
            embed_batcher=EmbeddingBatcher(gate, max_inputs=e.max_batch_inputs),
            parser_breaker=Breaker(
                pool,
                remote_parse.SERVICE,
                policy,
                actor=f"worker:{worker_id}",
            ),
            work=rt.settings.work,
        )
        options = WorkerOptions(
            concurrency=concurrency,
            max_embedding_jobs=max_embedding_jobs,
            lease_seconds=float(rt.settings.lease_seconds),
            poll_interval_s=poll_interval_s,
            shutdown_grace_s=max(1.0, rt.settings.lease_seconds / 2),
            retry=RetryPolicy(max_retries=rt.settings.max_retries),
        )
        worker = BaseWorker(ctx, dsn=rt.dsn, options=options)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.request_stop)
        try:
            await worker.run(once=once, until=until)
        finally:
            assert ctx.embed_batcher is not None
            await ctx.embed_batcher.aclose()
        return worker.processed
    finally:
        if not isinstance(doc_parser, LocalParser):
            await doc_parser.aclose()  # the remote parser's kept connections
        await pool.close()
