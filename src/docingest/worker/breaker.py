"""A circuit breaker for one external service, shared by every worker through Postgres.

Generic: the embedder uses it as service `embedder`; the parser path can use it as `parser`.
The common case (closed) costs one unlocked read; only an open/half-open circuit, a failure,
or the first success after failures takes the row lock.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from docingest.domain import circuit
from docingest.domain.circuit import Admission, BreakerPolicy, Circuit, CircuitState
from docingest.domain.errors import Deferred
from docingest.store import circuits
from docingest.store.db import DictConn
from docingest.worker import metrics


class Breaker:
    def __init__(
        self,
        pool: AsyncConnectionPool[DictConn],
        service: str,
        policy: BreakerPolicy,
        *,
        actor: str,
    ) -> None:
        self.pool = pool
        self.service = service
        self.policy = policy
        self.actor = actor

    def _seen(self, c: Circuit) -> Circuit:
        metrics.CIRCUIT_STATE.labels(service=self.service).set(circuit.GAUGE_VALUE[c.state])
        return c

    async def admit(self, holder: str) -> Admission:
        """May `holder` (one logical call) use the service now?"""
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

    def wait(self, seconds: float) -> Deferred:
        """The job must wait for this service: released without spending its retry budget."""
        return Deferred(max(seconds, 0.5), f"{self.service} circuit open")
