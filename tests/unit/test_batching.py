from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.pipeline.batching import plan_batches


def test_examples() -> None:
    assert plan_batches([], max_tokens=10) == []
    assert plan_batches([3, 3, 3, 3], max_tokens=6) == [range(0, 2), range(2, 4)]
    assert plan_batches([1] * 5, max_inputs=2, max_tokens=100) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]
    assert plan_batches([10, 10], max_tokens=20) == [range(0, 2)]


def test_oversized_item_gets_its_own_batch() -> None:
    assert plan_batches([1, 50, 1, 1], max_tokens=10) == [range(0, 1), range(1, 2), range(2, 4)]
    assert plan_batches([50], max_tokens=10) == [range(0, 1)]


def test_default_max_inputs_is_256() -> None:
    batches = plan_batches([1] * 600, max_tokens=10**9)
    assert [len(b) for b in batches] == [256, 256, 88]


@pytest.mark.parametrize(
    ("counts", "kwargs"),
    [
        ([1], {"max_tokens": 0}),
        ([1], {"max_tokens": 5, "max_inputs": 0}),
        ([-1], {"max_tokens": 5}),
    ],
)
def test_rejects_bad_arguments(counts: list[int], kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        plan_batches(counts, **kwargs)


@settings(max_examples=300)
@given(
    st.lists(st.integers(min_value=0, max_value=1200), max_size=300),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=3000),
)
def test_invariants(counts: list[int], max_inputs: int, max_tokens: int) -> None:
    batches = plan_batches(counts, max_inputs=max_inputs, max_tokens=max_tokens)
    covered = [i for batch in batches for i in batch]
    assert covered == list(range(len(counts)))  # every index once, in order
    for batch in batches:
        assert batch.step == 1
        assert 1 <= len(batch) <= max_inputs
        total = sum(counts[i] for i in batch)
        assert total <= max_tokens or len(batch) == 1
    # greedy: a batch was closed only because the next item did not fit
    for batch, following in itertools.pairwise(batches):
        nxt = following.start
        closed_by_count = len(batch) == max_inputs
        closed_by_tokens = sum(counts[i] for i in batch) + counts[nxt] > max_tokens
        assert closed_by_count or closed_by_tokens
