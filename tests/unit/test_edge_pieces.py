"""Pure pieces of the HTTP edge: JSON depth without parsing, per-address token buckets."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from docingest.api.admission import TokenBuckets
from docingest.domain.json_guard import json_depth, too_deep

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)


def real_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((real_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((real_depth(v) for v in value.values()), default=0)
    return 0


@given(JSON)
def test_depth_matches_the_parsed_structure(value: object) -> None:
    assert json_depth(json.dumps(value).encode()) == real_depth(value)


def test_brackets_inside_strings_do_not_count_and_deep_input_is_cheap() -> None:
    assert json_depth(b'{"a": "[[[[{{{{\\"]]]"}') == 1
    assert too_deep(b"[" * 100_000)
    assert not too_deep(b'{"query": "x", "k": 3}')


def test_token_buckets_refill_and_forget_the_least_recent() -> None:
    buckets = TokenBuckets(rate=2, burst=3, max_keys=2)
    assert [buckets.take("a", now=0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=0) == 0.5  # empty: one token comes in half a second
    assert buckets.take("a", now=1.0) == 0.0  # refilled
    buckets.take("b", now=1.0)
    buckets.take("c", now=1.0)  # "a" is forgotten (least recently used)
    assert [buckets.take("a", now=1.0) for _ in range(3)] == [0.0, 0.0, 0.0]
