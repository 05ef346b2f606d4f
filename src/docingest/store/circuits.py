"""Circuit breaker rows in Postgres (`circuit_breakers`), one per external service; the state
machine is `domain/circuit.py`. Changes happen in one short transaction with the row locked,
together with the event that records them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from docingest.domain.circuit import Circuit, CircuitState
from docingest.store import events
from docingest.store.db import DictConn
from docingest.store.locked_rows import lock_row

T = TypeVar("T")


def _circuit(row: dict[str, Any]) -> Circuit:
    return Circuit(
        state=CircuitState(row["state"]),
        failures=int(row["failures"]),
        opened_until=float(row["opened_until"]),
        probe_holder=row["probe_holder"],
        probe_until=float(row["probe_until"]),
        reason=row["reason"],
    )


async def read(conn: DictConn, service: str) -> Circuit:
    """The current circuit without locking (closed when never written)."""
    cur = await conn.execute(
        "SELECT * FROM docingest.circuit_breakers WHERE service = %s", (service,)
    )
    row = await cur.fetchone()
    return _circuit(row) if row else Circuit()


async def change(
    conn: DictConn,
    service: str,
    fn: Callable[[Circuit, float], tuple[Circuit, T]],
    *,
    actor: str,
) -> tuple[Circuit, T]:
    """Apply `fn` to the locked circuit; a change of state is written with a `circuit.<state>`
    event (outcome `alert` when the quota ran out). Returns the new circuit and `fn`'s answer."""
    async with conn.transaction():
        row, now = await lock_row(conn, "circuit_breakers", "service", service)
        before = _circuit(row)
        after, out = fn(before, now)
        if after != before:
            await conn.execute(
                "UPDATE docingest.circuit_breakers SET state = %s, failures = %s,"
                " opened_until = %s, probe_holder = %s, probe_until = %s, reason = %s,"
                " updated_at = now() WHERE service = %s",
                (
                    after.state.value,
                    after.failures,
                    after.opened_until,
                    after.probe_holder,
                    after.probe_until,
                    after.reason,
                    service,
                ),
            )
        if after.state is not before.state or after.reason != before.reason:
            await events.record(
                conn,
                actor=actor,
                action=f"circuit.{after.state.value}",
                outcome="alert" if after.reason == "quota_exhausted" else "ok",
                detail={
                    "service": service,
                    "reason": after.reason,
                    "failures": after.failures,
                    "open_for_s": round(max(0.0, after.opened_until - now), 3),
                },
            )
    return after, out
