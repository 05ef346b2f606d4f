"""The last answer of an async computation, reused for a short time (single flight).

`/readyz` and `/metrics` need no login and each read the database; behind this, a flood of
them costs at most one query per `ttl_s` however many arrive, and concurrent callers wait
for the one computation in progress instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, ttl_s: float = 1.0) -> None:
        self.ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._at = -float("inf")
        self._value: T | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl_s:
                self._value = await compute()
                self._at = time.monotonic()
            return self._value
