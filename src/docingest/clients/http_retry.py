"""The one HTTP retry loop of our provider clients (embeddings, LlamaParse).

An attempt raises `Retryable` for a transient fault (a retryable status, a connection error,
a timeout); anything else it raises passes through untouched. Between attempts we wait the
server's hint (`retry-after-ms`/`retry-after`) when it gave one, else exponential backoff
with up to 25 % jitter. A hint longer than `max_inline_wait_s` stops the loop at once: a
worker should not sleep minutes inside one call, so the wait goes back to the job scheduler
(the caller raises a domain error carrying `retry_after`). When the attempts run out, the
last `Retryable` is raised for the caller to turn into its own domain error.

We keep this loop (about forty lines) rather than `tenacity`/`stamina`: both can express it,
but only with custom stop and wait callables for the hint cap and a hand-carried last
exception, so the same code would remain around a dependency.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Retryable(Exception):
    """A transient failure of one attempt; `reason` is a safe label (no payload text)."""

    def __init__(
        self, reason: str, retry_after: float | None = None, *, throttled: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled  # a 429 rate limit, not a failure of the service


@dataclass(frozen=True)
class Backoff:
    """How many attempts, how long between them, and how long a server hint we honour inline."""

    max_attempts: int
    initial_delay_s: float
    max_delay_s: float
    max_inline_wait_s: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay(self, attempt: int, hint: float | None, jitter: float) -> float:
        """Seconds before attempt `attempt + 1` (0-based `attempt` just failed)."""
        if hint is not None and 0 < hint <= self.max_inline_wait_s:
            return hint
        base = min(self.initial_delay_s * 2.0**attempt, self.max_delay_s)
        return base * (1 - 0.25 * jitter)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
    log_extra: Mapping[str, object] | None = None,
) -> T:
    """`attempt()` until it returns, raises something other than `Retryable`, or the
    attempts (or a too-long hint) end it: then the last `Retryable` is raised. `what` names
    the call in the retry log line (an id-free label)."""
    failures = 0
    while True:
        try:
            return await attempt()
        except Retryable as exc:
            failures += 1
            hint = exc.retry_after
            if failures >= backoff.max_attempts or (
                hint is not None and hint > backoff.max_inline_wait_s
            ):
                raise
            delay = backoff.delay(failures - 1, hint, jitter())
            logger.warning(
                "%s failed (%s), retrying in %.2fs (attempt %d/%d)",
                what,
                exc.reason,
                delay,
                failures,
                backoff.max_attempts,
                extra=dict(log_extra or {}),
            )
        await sleep(delay)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's wait hint: `retry-after-ms`, else `retry-after` (seconds or HTTP date).

    Only positive values count (like openai-python); None otherwise.
    """
    try:
        ms = float(headers.get("retry-after-ms", ""))
    except ValueError:
        pass
    else:
        if math.isfinite(ms) and ms > 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if math.isfinite(seconds) and seconds > 0 else None
