"""The shared embedding rate budget, as pure arithmetic over a sliding-window log.

Every request that any worker sends is first reserved here: (time, tokens) appended to one
log per provider+model, kept in Postgres (`store/rate_budget.py`). A reservation is granted
only if, counting it, the requests and tokens inside the last `WINDOW_S` stay within the
configured RPM/TPM. So in ANY window of that length, never more than the limits are sent,
by all worker processes together. The window is one second longer than a minute: the margin
absorbs the jitter between reserving a slot and the request reaching the provider.

A batch can be granted in part: when the free tokens cover a useful prefix of the batch
(the whole batch, or at least `MIN_GRANT_SHARE` of the TPM), that prefix is sent now instead
of waiting for room for all of it. This is what keeps a deep queue at the limit instead of
idling while a large batch waits for the window to drain.

Provider hints (`retry-after`, `x-ratelimit-remaining-* = 0`) push `blocked_until`, which
holds every worker back until then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_S = 61.0
MIN_GRANT_SHARE = 0.25


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None


@dataclass(frozen=True)
class Window:
    """Reservations still inside the window, oldest first, and the provider's hold."""

    sent_at: tuple[float, ...] = ()
    sent_tokens: tuple[int, ...] = ()
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Grant:
    count: int  # leading inputs reserved now (0: wait)
    tokens: int
    wait_s: float = 0.0  # when count == 0: when to ask again


def prune(w: Window, now: float) -> Window:
    keep = next((i for i, t in enumerate(w.sent_at) if t > now - WINDOW_S), len(w.sent_at))
    if keep == 0:
        return w
    return dataclasses.replace(w, sent_at=w.sent_at[keep:], sent_tokens=w.sent_tokens[keep:])


def _prefix(counts: Sequence[int], free: int) -> tuple[int, int]:
    """Longest prefix of `counts` whose sum fits in `free`: (length, tokens)."""
    total = 0
    for i, n in enumerate(counts):
        if total + n > free:
            return i, total
        total += n
    return len(counts), total


def _expiry_wait(w: Window, now: float, excess: int, weights: Sequence[int]) -> float:
    """Seconds until the oldest entries whose `weights` sum to at least `excess` leave."""
    dropped = 0
    for t, weight in zip(w.sent_at, weights, strict=True):
        dropped += weight
        if dropped >= excess:
            return max(0.0, t + WINDOW_S - now)
    return 0.0


def reserve(w: Window, now: float, counts: Sequence[int], limits: Limits) -> tuple[Window, Grant]:
    """Reserve one request for the longest useful prefix of `counts` (tokens per input), or
    say how long to wait. Raises ValueError for an input larger than the whole TPM."""
    if not counts:
        raise ValueError("nothing to reserve")
    if limits.tpm is not None and max(counts) > limits.tpm:
        raise ValueError("an input exceeds the tokens-per-minute limit on its own")
    w = prune(w, now)
    waits = [w.blocked_until - now]
    if limits.rpm is not None and len(w.sent_at) + 1 > limits.rpm:
        excess = len(w.sent_at) + 1 - limits.rpm
        waits.append(_expiry_wait(w, now, excess, [1] * len(w.sent_at)))
    count, tokens = len(counts), sum(counts)
    if limits.tpm is not None:
        free = limits.tpm - sum(w.sent_tokens)
        count, tokens = _prefix(counts, free)
        wanted = _useful_prefix_tokens(counts, limits.tpm)
        if tokens < wanted:
            waits.append(_expiry_wait(w, now, wanted - free, w.sent_tokens))
    wait = max(waits)
    if wait > 0 or count == 0:
        return w, Grant(0, 0, max(wait, 0.001))
    if limits.unlimited:
        return w, Grant(count, tokens)
    grown = dataclasses.replace(w, sent_at=(*w.sent_at, now), sent_tokens=(*w.sent_tokens, tokens))
    return grown, Grant(count, tokens)


def _useful_prefix_tokens(counts: Sequence[int], tpm: int) -> int:
    """Tokens of the smallest prefix worth sending: all of it, or MIN_GRANT_SHARE of the TPM."""
    floor = MIN_GRANT_SHARE * tpm
    total = 0
    for n in counts:
        total += n
        if total >= floor:
            return total
    return total


def hold(w: Window, now: float, seconds: float) -> Window:
    """The provider asked everyone to wait `seconds` (retry-after, or a limit at zero)."""
    return dataclasses.replace(w, blocked_until=max(w.blocked_until, now + seconds))
