"""The shared rate budget's arithmetic: never more than the limits in any window, waits that
end exactly when room frees up, partial grants of a useful prefix, provider holds."""

from __future__ import annotations

import random

import pytest

from docingest.domain.rate_budget import (
    MIN_GRANT_SHARE,
    WINDOW_S,
    Grant,
    Limits,
    Window,
    hold,
    reserve,
)


def test_unlimited_grants_everything_and_keeps_no_log() -> None:
    w, g = reserve(Window(), 0.0, [100, 200], Limits())
    assert g == Grant(2, 300) and w == Window()


def test_rpm_waits_until_the_oldest_request_leaves_the_window() -> None:
    limits = Limits(rpm=2)
    w, g1 = reserve(Window(), 10.0, [1], limits)
    w, g2 = reserve(w, 20.0, [1], limits)
    w, g3 = reserve(w, 30.0, [1], limits)
    assert (g1.count, g2.count, g3.count) == (1, 1, 0)
    assert g3.wait_s == pytest.approx(10.0 + WINDOW_S - 30.0)
    w, g4 = reserve(w, 10.0 + WINDOW_S + 0.001, [1], limits)
    assert g4.count == 1


def test_tpm_grants_the_prefix_that_fits_when_it_is_worth_sending() -> None:
    limits = Limits(tpm=1000)
    w, g = reserve(Window(), 0.0, [400, 400], limits)
    assert g == Grant(2, 800)
    w, g = reserve(w, 1.0, [150, 150], limits)  # 200 free: 150 fits, but < 25 % of the TPM
    assert g.count == 0 and g.wait_s == pytest.approx(WINDOW_S - 1.0)
    w, g = reserve(w, WINDOW_S + 0.5, [300, 300, 300, 300], limits)  # 800 freed: 1000 free
    assert g == Grant(3, 900)


def test_a_small_whole_batch_is_granted_below_the_useful_share() -> None:
    limits = Limits(tpm=1000)
    w, _ = reserve(Window(), 0.0, [900], limits)
    _, g = reserve(w, 1.0, [50, 40], limits)
    assert g == Grant(2, 90)
    assert MIN_GRANT_SHARE * 1000 > 90


def test_provider_hold_blocks_everyone_until_it_ends() -> None:
    w = hold(Window(), 5.0, 3.0)
    w = hold(w, 5.5, 1.0)  # a shorter hint never shortens the hold
    _, g = reserve(w, 6.0, [1], Limits())
    assert g.count == 0 and g.wait_s == pytest.approx(2.0)
    _, g = reserve(w, 8.01, [1], Limits(rpm=5))
    assert g.count == 1


def test_an_input_larger_than_the_tpm_is_refused() -> None:
    with pytest.raises(ValueError):
        reserve(Window(), 0.0, [2000], Limits(tpm=1000))


@pytest.mark.parametrize("seed", range(5))
def test_random_traffic_never_exceeds_the_limits_in_any_window(seed: int) -> None:
    """Many clients asking at random times: every sliding window stays within RPM and TPM,
    and a client told to wait is granted when it comes back after that wait."""
    rng = random.Random(seed)
    limits = Limits(rpm=7, tpm=5000)
    w = Window()
    granted: list[tuple[float, int]] = []
    now = 0.0
    for _ in range(400):
        now += rng.expovariate(1 / 3.0)
        counts = [rng.randint(50, 600) for _ in range(rng.randint(1, 8))]
        w, g = reserve(w, now, counts, limits)
        if g.count == 0:
            w, again = reserve(w, now + g.wait_s + 1e-6, counts, limits)
            assert again.count > 0
            now += g.wait_s + 1e-6
            g = again
        assert g.tokens == sum(counts[: g.count])
        granted.append((now, g.tokens))
    for start, _ in granted:
        inside = [t for at, t in granted if start <= at < start + WINDOW_S]
        assert len(inside) <= limits.rpm
        assert sum(inside) <= limits.tpm
