"""Reciprocal rank fusion (Cormack, Clarke and Buettcher, 2009) of best-first rankings.

A result's fused score is the sum over the rankings it appears in of weight / (k + rank), rank
counted from 1. Fusion uses ranks only, never the rankings' own scores, so a cosine and a BM25
need no common scale. Ties (same fused score) are broken by the first ranking's order, then by
the id, so the order is reproducible.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

#: the constant of the original paper; it damps the weight of the very first ranks
RRF_K = 60

T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]], weights: Sequence[float], *, k: int = RRF_K
) -> list[tuple[T, float]]:
    """(id, fused score) pairs, best first. `rankings[i]` is best first, without repeats."""
    if len(rankings) != len(weights):
        raise ValueError("one weight per ranking")
    scores: dict[T, float] = {}
    first_seen: dict[T, tuple[int, int]] = {}
    for which, (ranking, weight) in enumerate(zip(rankings, weights, strict=True)):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            first_seen.setdefault(item, (which, rank))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]], str(kv[0])))
