"""`Breaker.call`, the guard every remote-parser request goes through, on real Postgres:
failures open the circuit and turn into `Deferred` (no retry spent), an open circuit refuses
without calling, exactly one half-open probe is let through, and any answer closes it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from docingest.domain.circuit import BreakerPolicy
from docingest.domain.errors import Deferred, ErrorCode, PermanentError, TransientError
from docingest.store import circuits
from docingest.store.db import open_pool
from docingest.worker import breaker as breaker_module
from docingest.worker.breaker import Breaker
from tests.metrics_scrape import local

COOLDOWN_S = 0.4


class Service:
    """A stand-in for one remote call: counts calls and does what it is told."""

    def __init__(self) -> None:
        self.calls = 0
        self.outcome: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.outcome is not None:
            raise self.outcome
        return "ok"


def circuit_row(dsn: str) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT state, failures FROM docingest.circuit_breakers WHERE service = 'parser'"
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


async def until_admitted(breaker: Breaker, service: Service, timeout_s: float) -> str:
    """Call through the breaker until it lets the call through (the cool-down is a duration)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await breaker.call(service)
        except Deferred as deferred:
            assert deferred.delay_s >= 0.5  # a job is never re-claimed in a busy loop
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def parser_calls(outcome: str) -> float:
    return local(
        "docingest_external_call_seconds_count",
        service="parser",
        operation="status",
        outcome=outcome,
    )


def test_failures_open_the_circuit_then_one_probe_closes_it(dsn: str) -> None:
    down = TransientError(ErrorCode.PARSER_UNAVAILABLE, "HTTP 503")
    before = {o: parser_calls(o) for o in ("ok", "failed", "rejected")}

    async def scenario() -> None:
        pool = await open_pool(dsn)
        try:
            policy = BreakerPolicy(failure_threshold=2, cooldown_s=COOLDOWN_S)
            breaker = Breaker(pool, "parser", policy, actor="test")
            service = Service()
            assert await breaker.call(service) == "ok"

            service.outcome = down
            with pytest.raises(TransientError):  # below the threshold: an ordinary retry
                await breaker.call(service)
            opened_at = time.monotonic()
            with pytest.raises(Deferred, match="parser circuit open"):  # opens: the job waits
                await breaker.call(service)
            assert circuit_row(dsn) == ("open", 2)
            with pytest.raises(Deferred):  # open: refused without calling the service
                await breaker.call(service)
            assert service.calls == 3

            # the cool-down over, exactly one caller probes; others wait meanwhile
            service.outcome, service.gate = None, asyncio.Event()
            probe = asyncio.create_task(until_admitted(breaker, service, 10))
            while service.calls < 4:
                await asyncio.sleep(0.01)
            assert time.monotonic() - opened_at >= COOLDOWN_S
            assert circuit_row(dsn)[0] == "half_open"
            with pytest.raises(Deferred):
                await breaker.call(Service())
            service.gate.set()
            assert await probe == "ok"
            assert circuit_row(dsn) == ("closed", 0)

            # a refusal (4xx) is an answer: the service is up, the failure count restarts
            service.gate = None
            service.outcome = down
            with pytest.raises(TransientError):
                await breaker.call(service)
            service.outcome = PermanentError(ErrorCode.PARSER_REJECTED, "HTTP 400")
            with pytest.raises(PermanentError):
                await breaker.call(service)
            service.outcome = down
            with pytest.raises(TransientError):  # not Deferred: the count restarted at 0
                await breaker.call(service)
            assert circuit_row(dsn) == ("closed", 1)
            # each request that reached the service is timed under its outcome
            service.outcome = None
            await breaker.call(service, operation="status")
            with pytest.raises(PermanentError):
                service.outcome = PermanentError(ErrorCode.PARSER_REJECTED, "HTTP 400")
                await breaker.call(service, operation="status")
            with pytest.raises(TransientError):
                service.outcome = down
                await breaker.call(service, operation="status")
            assert {o: parser_calls(o) - n for o, n in before.items()} == {
                "ok": 1,
                "failed": 1,
                "rejected": 1,
            }
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_clean_circuit_is_trusted_for_its_window_only(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within `trust_clean_s` of seeing the circuit closed and clean, calls read nothing; a
    circuit another worker opened meanwhile refuses the first call after the window."""
    clock = [1000.0]
    monkeypatch.setattr(breaker_module, "_now", lambda: clock[0])
    reads = [0]
    real_read = circuits.read

    async def counting_read(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(circuits, "read", counting_read)

    async def scenario() -> None:
        pool = await open_pool(dsn)
        try:
            breaker = Breaker(pool, "parser", BreakerPolicy(), actor="test", trust_clean_s=1.0)
            service = Service()
            for _ in range(5):
                assert await breaker.call(service) == "ok"
            assert (service.calls, reads[0]) == (5, 1)  # admitted once from the row

            with psycopg.connect(dsn, autocommit=True) as c:  # another worker opened it
                c.execute(
                    "INSERT INTO docingest.circuit_breakers (service, state, failures,"
                    " opened_until) VALUES ('parser', 'open', 3, extract(epoch FROM now()) + 60)"
                    " ON CONFLICT (service) DO UPDATE SET state = excluded.state,"
                    " failures = excluded.failures, opened_until = excluded.opened_until"
                )
            clock[0] += 0.9
            assert await breaker.call(service) == "ok"  # still inside the window
            clock[0] += 0.2
            with pytest.raises(Deferred, match="parser circuit open"):
                await breaker.call(service)
            assert service.calls == 6
        finally:
            await pool.close()

    asyncio.run(scenario())
