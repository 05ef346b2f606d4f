"""A circuit breaker for one external service, shared by every worker through Postgres.

Generic: the remote parser goes through `call` as service `parser`; the embedder's gate
(`embed_gate.py`) as service `embedder` through `enter` and `through`, because it reserves
rate budget between admission and the request. Both run the same sequence: admit, call,
feed the outcome back. The common case (closed) costs one unlocked read; only an open/half-open
circuit, a failure, or the first success after failures takes the row lock.

A circuit this worker found closed and clean (no failures counted) is trusted for
`trust_clean_s` without reading it again: under load that read was among the most frequent
statements (two per request, ~7 per document). The price is bounded: a circuit that
another worker opens is seen here up to that long later (its own failures are seen at once,
as they are written from here), and a success in that window does not reset a failure
counted meanwhile by another worker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import uuid4

from psycopg_pool import AsyncConnectionPool

from docingest.domain import circuit
from docingest.domain.circuit import Admission, BreakerPolicy, Circuit, CircuitState
from docingest.domain.errors import (
    Deferred,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from docingest.store import circuits
from docingest.store.db import DictConn
from docingest.worker import metrics

T = TypeVar("T")

TRUST_CLEAN_S = 1.0
_now = time.monotonic  # the clock of the trust window (a seam for tests)


class Breaker:
    def __init__(
        self,
        pool: AsyncConnectionPool[DictConn],
        service: str,
        policy: BreakerPolicy,
        *,
        actor: str,
        trust_clean_s: float = TRUST_CLEAN_S,
    ) -> None:
        self.pool = pool
        self.service = service
        self.policy = policy
        self.actor = actor
        self.trust_clean_s = trust_clean_s
        self._clean_until = 0.0  # monotonic; see the module's docstring

    def _seen(self, c: Circuit) -> Circuit:
        metrics.CIRCUIT_STATE.labels(service=self.service).set(circuit.GAUGE_VALUE[c.state])
        clean = c == circuit.CLOSED
        self._clean_until = _now() + self.trust_clean_s if clean else 0.0
        return c

    def _trusted_clean(self) -> bool:
        return _now() < self._clean_until

    async def admit(self, holder: str) -> Admission:
        """May `holder` (one logical call) use the service now?"""
        if self._trusted_clean():
            return Admission(True)
        async with self.pool.connection() as conn:
            current = await circuits.read(conn, self.service)
            if current.state is CircuitState.CLOSED:
                self._seen(current)
                return Admission(True)
            after, admission = await circuits.change(
                conn,
                self.service,
                lambda c, now: circuit.admit(c, now, holder, self.policy),
                actor=self.actor,
            )
        self._seen(after)
        return admission

    async def succeeded(self) -> None:
        if self._trusted_clean():
            return
        async with self.pool.connection() as conn:
            if await circuits.read(conn, self.service) == circuit.CLOSED:
                self._seen(circuit.CLOSED)
                return
            after, _ = await circuits.change(
                conn,
                self.service,
                lambda c, now: (circuit.CLOSED, None),
                actor=self.actor,
            )
        self._seen(after)

    async def failed(self) -> Circuit:
        async with self.pool.connection() as conn:
            after, _ = await circuits.change(
                conn,
                self.service,
                lambda c, now: (circuit.on_failure(c, now, self.policy), None),
                actor=self.actor,
            )
        return self._seen(after)

    async def quota_exhausted(self) -> Circuit:
        async with self.pool.connection() as conn:
            after, _ = await circuits.change(
                conn,
                self.service,
                lambda c, now: (circuit.on_quota_exhausted(c, now, self.policy), None),
                actor=self.actor,
            )
        return self._seen(after)

    async def call(self, fn: Callable[[], Awaitable[T]], *, operation: str = "call") -> T:
        """One logical call to the service through the breaker: `enter`, then `through`."""
        await self.enter(uuid4().hex)
        return await self.through(fn, operation=operation)

    async def enter(self, holder: str) -> None:
        """Admit `holder` or raise `Deferred`: refused while open, and while another caller
        holds the half-open probe."""
        admission = await self.admit(holder)
        if not admission.allowed:
            raise self.wait(admission.retry_after_s)

    async def through(self, fn: Callable[[], Awaitable[T]], *, operation: str) -> T:
        """Make one admitted request, timed as `operation` in
        `docingest_external_call_seconds`, and feed its outcome back to the circuit.

        A `TransientError` counts as a failure and, once the circuit is open, becomes
        `Deferred`, so the job waits without spending its retry budget. `QuotaExhausted`
        opens the circuit for the quota cool-down and becomes `Deferred`. `RateLimited` (the
        service is up but busy) passes through and counts neither way. Any other answer,
        even a refusal (`PermanentError`), shows the service is up."""
        try:
            with metrics.external_call(self.service, operation):
                result = await fn()
        except RateLimited:
            raise
        except QuotaExhausted as exc:
            await self.quota_exhausted()
            raise self.wait(self.policy.quota_cooldown_s) from exc
        except TransientError as exc:
            if (await self.failed()).state is CircuitState.OPEN:
                raise self.wait(self.policy.cooldown_s) from exc
            raise
        except PermanentError:
            await self.succeeded()
            raise
        await self.succeeded()
        return result

    def wait(self, seconds: float) -> Deferred:
        """The job must wait for this service: released without spending its retry budget."""
        return Deferred(max(seconds, 0.5), f"{self.service} circuit open")
