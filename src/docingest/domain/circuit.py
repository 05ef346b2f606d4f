"""Circuit breaker state machine for one external service (pure; the state lives in Postgres,
`store/circuits.py`, so every worker on every machine sees the same circuit).

closed --N consecutive failures--> open --cool-down over--> half_open (exactly one probe)
half_open --probe succeeds--> closed;  half_open --probe fails--> open (a new cool-down)
any state --quota exhausted--> open for the (long) quota cool-down

Times are seconds on one clock (the database's), so machines with skewed clocks agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    cooldown_s: float = 30.0  # open -> half_open after this long
    quota_cooldown_s: float = 900.0  # how long an exhausted quota keeps the circuit open
    probe_timeout_s: float = 60.0  # a probe holder that vanished frees the probe after this
    probe_poll_s: float = 2.0  # others ask again this soon: the probe's answer reopens or closes


@dataclass(frozen=True)
class Circuit:
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_until: float = 0.0
    probe_holder: str | None = None
    probe_until: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: bool = False  # this caller is the one half-open probe
    retry_after_s: float = 0.0  # when refused: how long until asking again makes sense


CLOSED = Circuit()  # also where any answer from the service (even "bad input") leads


def admit(c: Circuit, now: float, holder: str, policy: BreakerPolicy) -> tuple[Circuit, Admission]:
    """May `holder` call the service now? Moves open -> half_open when the cool-down is over
    and makes the first caller after it the single probe."""
    if c.state is CircuitState.CLOSED:
        return c, Admission(True)
    if c.state is CircuitState.OPEN and now < c.opened_until:
        return c, Admission(False, retry_after_s=c.opened_until - now)
    if c.state is CircuitState.HALF_OPEN and c.probe_holder != holder and now < c.probe_until:
        wait = min(c.probe_until - now, policy.probe_poll_s)
        return c, Admission(False, retry_after_s=wait)
    probing = dataclasses.replace(
        c,
        state=CircuitState.HALF_OPEN,
        probe_holder=holder,
        probe_until=now + policy.probe_timeout_s,
    )
    return probing, Admission(True, probe=True)


def on_failure(c: Circuit, now: float, policy: BreakerPolicy) -> Circuit:
    """The service failed (5xx, timeout, connection error). A failed probe re-opens at once."""
    failures = c.failures + 1
    if c.state is CircuitState.HALF_OPEN or (
        c.state is CircuitState.CLOSED and failures >= policy.failure_threshold
    ):
        return Circuit(CircuitState.OPEN, failures, now + policy.cooldown_s, reason="failures")
    return dataclasses.replace(c, failures=failures)


def on_quota_exhausted(c: Circuit, now: float, policy: BreakerPolicy) -> Circuit:
    """Out of quota is not a passing fault: stop spending for the long quota cool-down."""
    until = max(c.opened_until, now + policy.quota_cooldown_s)
    return Circuit(CircuitState.OPEN, c.failures, until, reason="quota_exhausted")
