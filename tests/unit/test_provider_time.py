"""A job's time waiting on the embedding provider is the union of its requests' spans: two
requests in flight together count once (the predictability target of `docingest validate`
subtracts it from the job's end-to-end time, so a sum would understate docingest's own)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from docingest.worker.embedding import Spend, covered_seconds


def test_overlapping_requests_count_once() -> None:
    assert covered_seconds([(0.0, 1.0), (0.5, 1.5), (3.0, 4.0)]) == 2.5
    assert covered_seconds([(2.0, 3.0), (0.0, 10.0)]) == 10.0
    assert covered_seconds([]) == 0.0


def test_progress_adds_earlier_attempts_to_this_ones_union() -> None:
    spend = Spend.from_progress({"embed_provider_s": 2}, None)
    spend.spans += [(10.0, 11.0), (10.5, 11.25)]
    assert spend.progress()["embed_provider_s"] == 3.25


spans = st.lists(
    st.tuples(st.floats(0, 100), st.floats(0, 10)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=20,
)


@given(spans)
def test_union_lies_between_the_longest_span_and_the_sum(
    given_spans: list[tuple[float, float]],
) -> None:
    """Never less than one request took, never more than all of them, nor than the time from
    the first start to the last end."""
    total = covered_seconds(given_spans)
    lengths = [end - start for start, end in given_spans]
    assert max(lengths, default=0.0) - 1e-9 <= total <= sum(lengths) + 1e-9
    if given_spans:
        first, last = min(s for s, _ in given_spans), max(e for _, e in given_spans)
        assert total <= last - first + 1e-9
