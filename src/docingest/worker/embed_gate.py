"""Every embedding request a worker sends goes through here: the shared circuit breaker, then
a reservation from the shared RPM/TPM budget, then exactly one HTTP attempt, then feedback.

- Throttled (429 rate limit): the provider's retry-after holds the shared budget for every
  worker, and the request is re-reserved and resent (no failure counted, no retry spent).
- Quota exhausted: the circuit opens for the long quota cool-down, an alert event is written
  (by the circuit change), and the job waits: it does not fail.
- Service failure (5xx, timeout, connection): counted by the breaker; the job retries with
  backoff, or, once the circuit is open, waits for it without spending retries.
- Input refused (400): handed back to the caller as `Sent.vectors is None`, so it can split
  the batch and find the poison input.

No transaction is ever held across the HTTP call: the budget and the circuit are each one
short transaction before or after it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import uuid4

from psycopg_pool import AsyncConnectionPool

from docingest.clients.embedders import Embedded, Embedder, OpenAIEmbedder, Vector
from docingest.domain.circuit import BreakerPolicy
from docingest.domain.errors import (
    Deferred,
    DocingestError,
    InputRejected,
    QuotaExhausted,
    RateLimited,
)
from docingest.domain.pricing import cost_usd, price_per_mtok
from docingest.domain.rate_budget import WINDOW_S, Grant, Limits
from docingest.store import rate_budget
from docingest.store.db import DictConn
from docingest.worker import metrics
from docingest.worker.breaker import Breaker

SERVICE = "embedder"
DEFAULT_THROTTLE_HOLD_S = 1.0  # a 429 without a retry-after hint
MAX_THROTTLES_PER_CALL = 8  # then the job waits outside (released, no retry spent)


@dataclass(frozen=True)
class Sent:
    """One answered request: it covered the first `count` inputs."""

    count: int
    vectors: list[Vector] | None  # None: the provider refused these inputs (HTTP 400)
    tokens: int  # billed tokens (0 when refused)
    cost_usd: float
    # when the answered call started and ended (time.monotonic(); the client's own retries
    # included): a job's provider time is the union of its calls' spans, not their sum, as
    # two of its requests may be in flight at once
    provider_span: tuple[float, float] = (0.0, 0.0)


class EmbeddingGate:
    def __init__(
        self,
        pool: AsyncConnectionPool[DictConn],
        embedder: Embedder,
        *,
        limits: Limits | None = None,
        breaker: BreakerPolicy | None = None,
        price_per_mtok_usd: float | None = None,
        actor: str = "worker",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.pool = pool
        # one request per call: every attempt must be reserved from the budget first
        self.embedder = (
            embedder.single_attempt() if isinstance(embedder, OpenAIEmbedder) else embedder
        )
        self.model = embedder.model
        self.limits = limits or Limits()
        self.breaker = Breaker(pool, SERVICE, breaker or BreakerPolicy(), actor=actor)
        self.price = price_per_mtok(self.model, price_per_mtok_usd)
        self.budget_key = f"{SERVICE}:{self.model}"
        self._sleep = sleep

    @property
    def max_request_tokens(self) -> int:
        """Tokens one request may carry: the provider's cap, and never more than the TPM."""
        cap = self.embedder.max_batch_tokens
        return min(cap, self.limits.tpm) if self.limits.tpm is not None else cap

    async def send(self, texts: Sequence[str], counts: Sequence[int]) -> Sent:
        """Embed a leading part of `texts` (as much as the budget allows now, at least one)
        in one answered request. Raises `Deferred` when the job must wait for the circuit
        or the budget, `TransientError` for a service failure, `PermanentError` otherwise."""
        holder = uuid4().hex
        throttles = 0
        while True:
            await self.breaker.enter(holder)
            grant = await self._reserve(counts)
            called = time.monotonic()
            try:
                result = await self.breaker.through(
                    functools.partial(self._embed, texts[: grant.count]), operation="embed"
                )
            except RateLimited as exc:
                throttles += 1
                metrics.EMBED_THROTTLES.labels(model=self.model, source="provider").inc()
                await self._hold(exc.retry_after or DEFAULT_THROTTLE_HOLD_S)
                if throttles >= MAX_THROTTLES_PER_CALL:
                    raise Deferred(
                        exc.retry_after or WINDOW_S, "embedder keeps throttling"
                    ) from exc
                continue
            except InputRejected:  # the service is up; the input is the problem
                return Sent(grant.count, None, 0, 0.0, (called, time.monotonic()))
            await self._follow_rate_limit(result)
            cost = cost_usd(grant.tokens, self.price)
            metrics.EMBED_TOKENS.labels(model=self.model).inc(grant.tokens)
            metrics.EMBED_COST.labels(model=self.model).inc(cost)
            return Sent(grant.count, result.vectors, grant.tokens, cost, (called, time.monotonic()))

    async def _embed(self, texts: Sequence[str]) -> Embedded:
        """One request, counted under its outcome (ok, throttled, quota, rejected, failed)."""
        try:
            result = await self.embedder.embed(texts)
        except DocingestError as exc:
            self._count(metrics.call_outcome(exc))
            if isinstance(exc, QuotaExhausted):
                metrics.QUOTA_EXHAUSTED.labels(model=self.model).inc()
            raise
        self._count("ok")
        return result

    def _count(self, outcome: str) -> None:
        metrics.EMBED_REQUESTS.labels(model=self.model, outcome=outcome).inc()

    async def _reserve(self, counts: Sequence[int]) -> Grant:
        """Wait (bounded) until the shared budget grants a useful prefix of the batch: at most
        one budget window from its first answer, then the job is deferred. Counted from the
        answer, not from the asking: after a burst the budget says "one window less the few
        milliseconds since", and a slow round trip (a loaded database) must not turn that
        into a deferred job."""
        waiting_since: float | None = None
        while True:
            async with self.pool.connection() as conn:
                grant = await rate_budget.reserve(conn, self.budget_key, counts, self.limits)
            if grant.count:
                return grant
            now = time.monotonic()
            waiting_since = now if waiting_since is None else waiting_since
            if now - waiting_since + grant.wait_s > WINDOW_S:
                raise Deferred(grant.wait_s, "embedding rate budget")
            metrics.EMBED_THROTTLES.labels(model=self.model, source="budget").inc()
            metrics.EMBED_BUDGET_WAIT.labels(model=self.model).inc(grant.wait_s)
            await self._sleep(grant.wait_s)

    async def _hold(self, seconds: float) -> None:
        async with self.pool.connection() as conn:
            await rate_budget.hold(conn, self.budget_key, seconds)

    async def _follow_rate_limit(self, result: Embedded) -> None:
        """A provider limit at zero holds everyone until it resets (this request's
        x-ratelimit-* headers)."""
        snap = result.rate_limit
        if snap is None:
            return
        waits = [
            reset
            for remaining, reset in (
                (snap.remaining_requests, snap.reset_requests_s),
                (snap.remaining_tokens, snap.reset_tokens_s),
            )
            if remaining == 0 and reset
        ]
        if waits:
            await self._hold(min(max(waits), WINDOW_S))
