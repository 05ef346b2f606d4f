"""Micro-batch planning for embedding calls (DESIGN.md section 2).

Each provider call carries at most ``max_inputs`` inputs (256 by default) and, where possible,
at most ``max_tokens`` tokens in total (the provider's per-request token limit).
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(
    token_counts: Sequence[int], *, max_inputs: int = 256, max_tokens: int
) -> list[range]:
    """Cut the inputs ``0..len(token_counts)-1`` into consecutive, non-empty index ranges.

    Greedy and in order: a batch is closed when the next input would make it exceed
    ``max_inputs`` inputs or ``max_tokens`` tokens. Every index is in exactly one range, and the
    ranges are in ascending order. Each range has at most ``max_inputs`` items and a token sum
    of at most ``max_tokens``, with one exception: a single input that alone exceeds
    ``max_tokens`` gets a batch of its own (splitting it is the chunker's job; the provider
    will accept or reject it, and the caller sees that error for that input only).
    """
    if max_inputs < 1:
        raise ValueError("max_inputs must be >= 1")
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    batches: list[range] = []
    start = 0
    total = 0
    for i, tokens in enumerate(token_counts):
        if tokens < 0:
            raise ValueError("token counts must be >= 0")
        if i > start and (i - start >= max_inputs or total + tokens > max_tokens):
            batches.append(range(start, i))
            start, total = i, 0
        total += tokens
    if start < len(token_counts):
        batches.append(range(start, len(token_counts)))
    return batches
