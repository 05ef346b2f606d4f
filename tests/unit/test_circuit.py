"""The circuit breaker state machine and the price table."""

from __future__ import annotations

import pytest

from docingest.domain import circuit
from docingest.domain.circuit import BreakerPolicy, Circuit, CircuitState
from docingest.domain.pricing import cost_usd, price_per_mtok

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10.0, quota_cooldown_s=600.0)


def _fail(c: Circuit, times: int, now: float = 0.0) -> Circuit:
    for _ in range(times):
        c = circuit.on_failure(c, now, POLICY)
    return c


def test_opens_after_n_consecutive_failures_only() -> None:
    c = _fail(circuit.CLOSED, 2)
    assert c.state is CircuitState.CLOSED and c.failures == 2
    assert circuit.admit(c, 0.0, "a", POLICY)[1].allowed
    c = _fail(c, 1, now=100.0)
    assert c.state is CircuitState.OPEN and c.opened_until == 110.0
    _, refused = circuit.admit(c, 104.0, "a", POLICY)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(6.0)


def test_half_open_lets_exactly_one_probe_through() -> None:
    c = _fail(circuit.CLOSED, 3)
    c, first = circuit.admit(c, 10.0, "probe", POLICY)
    assert first.allowed and first.probe and c.state is CircuitState.HALF_OPEN
    c2, second = circuit.admit(c, 10.5, "other", POLICY)
    assert not second.allowed and c2 == c
    assert second.retry_after_s == POLICY.probe_poll_s  # soon: the probe will have answered
    _, again = circuit.admit(c, 11.0, "probe", POLICY)  # the probe's own resend
    assert again.allowed


def test_probe_success_closes_and_probe_failure_reopens() -> None:
    c, _ = circuit.admit(_fail(circuit.CLOSED, 3), 10.0, "p", POLICY)
    reopened = circuit.on_failure(c, 12.0, POLICY)
    assert reopened.state is CircuitState.OPEN and reopened.opened_until == 22.0
    assert circuit.CLOSED.state is CircuitState.CLOSED and circuit.CLOSED.failures == 0


def test_a_vanished_probe_frees_the_slot_after_its_timeout() -> None:
    c, _ = circuit.admit(_fail(circuit.CLOSED, 3), 10.0, "gone", POLICY)
    _, late = circuit.admit(c, 10.0 + POLICY.probe_timeout_s + 0.1, "next", POLICY)
    assert late.allowed and late.probe


def test_quota_opens_for_the_long_cooldown_and_never_shortens() -> None:
    c = circuit.on_quota_exhausted(circuit.CLOSED, 0.0, POLICY)
    assert c.state is CircuitState.OPEN and c.reason == "quota_exhausted"
    assert c.opened_until == 600.0
    assert not circuit.admit(c, 599.0, "a", POLICY)[1].allowed
    assert circuit.on_quota_exhausted(c, 1.0, POLICY).opened_until == 601.0


def test_prices() -> None:
    assert price_per_mtok("text-embedding-3-small") == 0.02
    assert price_per_mtok("text-embedding-3-large") == 0.13
    assert price_per_mtok("text-embedding-ada-002") == 0.10
    assert price_per_mtok("unknown-model") is None
    assert price_per_mtok("text-embedding-3-small", override=0.5) == 0.5
    assert cost_usd(1_000_000, 0.02) == pytest.approx(0.02)
    assert cost_usd(123, None) == 0.0
