"""Rate-limit arithmetic: per-minute token buckets (RPM, TPM), the sliding window the stats
report, and Go-style durations for `x-ratelimit-reset-*`."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Literal


class TokenBucket:
    """A per-minute token bucket: full at `capacity`, refilling at capacity/60 per second."""

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.level = float(capacity)
        self.updated = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(float(self.capacity), self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def reset_after(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


class SlidingWindow:
    """Requests and tokens in the trailing `span` seconds, and the most ever seen at once."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._entries: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0
        self.max_requests = 0
        self.max_tokens = 0

    def add(self, now: float, tokens: int) -> None:
        self._entries.append((now, tokens))
        self._tokens += tokens
        while self._entries and self._entries[0][0] <= now - self.span:
            self._tokens -= self._entries.popleft()[1]
        self.max_requests = max(self.max_requests, len(self._entries))
        self.max_tokens = max(self.max_tokens, self._tokens)


@dataclass(frozen=True)
class BudgetDenial:
    kind: Literal["requests", "tokens"]
    limit: int
    used: int
    requested: int
    retry_after_s: float


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String() at millisecond precision: 12ms, 1.5s, 6m0s."""
    total_ms = round(seconds * 1000)
    if total_ms <= 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rem = divmod(total_ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs = f"{rem / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
