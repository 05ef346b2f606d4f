"""Reciprocal rank fusion: sums of weight / (k + rank), agreement wins, reproducible ties."""

from __future__ import annotations

import pytest

from docingest.pipeline.rank_fusion import RRF_K, reciprocal_rank_fusion


def test_scores_are_weighted_reciprocal_rank_sums() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "d"]], [1.0, 2.0]))
    assert fused["a"] == pytest.approx(1 / (RRF_K + 1))
    assert fused["c"] == pytest.approx(1 / (RRF_K + 3) + 2 / (RRF_K + 1))
    assert fused["d"] == pytest.approx(2 / (RRF_K + 2))


def test_agreement_beats_one_first_place_and_ties_keep_the_first_rankings_order() -> None:
    order = [item for item, _ in reciprocal_rank_fusion([["x", "y"], ["z", "y"]], [1.0, 1.0])]
    assert order == ["y", "x", "z"]  # x and z tie: x is from the first ranking
    assert reciprocal_rank_fusion([[], []], [1.0, 1.0]) == []
    with pytest.raises(ValueError, match="one weight per ranking"):
        reciprocal_rank_fusion([["a"]], [1.0, 1.0])
