"""The fakes' own ledgers: jittered latencies stay in their range, billed texts are counted
by digest, injected faults by kind."""

from __future__ import annotations

import random

from docingest.testing.fake_ledgers import BilledTexts, FaultCounter, jittered_s


def test_jitter_is_uniform_within_base_and_base_plus_jitter() -> None:
    rng = random.Random(3)
    draws = [jittered_s(300, 500, rng) for _ in range(2000)]
    assert 0.3 <= min(draws) < 0.33 and 0.77 < max(draws) <= 0.8
    assert 0.52 < sum(draws) / len(draws) < 0.58  # mean of U(300, 800) ms is 550 ms
    assert jittered_s(50, 0) == 0.05


def test_billed_texts_count_distinct_and_repeats() -> None:
    billed = BilledTexts()
    billed.record(["a", "b", "a"])
    billed.record(["b", "c"])
    assert billed.snapshot() == {"distinct_texts_billed": 3, "inputs_billed_again": 2}
    billed.reset()
    assert billed.snapshot() == {"distinct_texts_billed": 0, "inputs_billed_again": 0}


def test_fault_counter_counts_by_kind() -> None:
    faults = FaultCounter()
    faults.count("upload_429")
    faults.count("reordered_callbacks", 2)
    faults.count("upload_429")
    assert faults.snapshot() == {"upload_429": 2, "reordered_callbacks": 2}
