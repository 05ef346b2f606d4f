"""Retry policy as a pure decision (after procrastinate's RetryStrategy)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base 3 s, doubling, capped; budget counts consecutive
    failures without progress (DESIGN.md §2)."""

    max_retries: int = 3
    base_s: float = 3.0
    cap_s: float = 300.0

    def decide(
        self,
        failures_so_far: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """`failures_so_far` is the consecutive failure count before this one."""
        if failures_so_far >= self.max_retries:
            return RetryDecision(retry=False, delay_s=0.0)
        backoff = min(self.cap_s, self.base_s * (2**failures_so_far))
        jitter = (rng or random).uniform(0.75, 1.0)
        delay = backoff * jitter
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.cap_s)
        return RetryDecision(retry=True, delay_s=delay)
