"""Refused anonymous requests, counted instead of written one audit row each.

An unauthenticated client can send thousands of requests a second; one `events` row per
refusal would let it grow the audit table at that rate. Each refusal of a request without a
valid token (401, and the admission lanes' 429/503) is instead:

- counted in `docingest_api_anonymous_refusals_total{status, code}` (closed label sets), and
- folded into one `auth.refused.anonymous` events row per source address and minute, written
  once that minute is over (and at shutdown): `detail = {address, minute, count, by}` where
  `by` counts `"<status>:<code>"`. At most `MAX_SOURCES_PER_MINUTE` addresses are kept per
  minute; the rest are folded under the address `other`, so memory stays bounded.

A process that dies loses its current minute of counts (the metric too); these rows are noise
by policy (`docingest audit prune`). Refusals of authenticated callers (403, and 404 on
another user's ids) stay one row each: they name a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from prometheus_client import Counter as MetricCounter
from psycopg_pool import AsyncConnectionPool

from docingest.store import events
from docingest.store.db import DictConn

log = logging.getLogger(__name__)

ACTION = events.ANONYMOUS_REFUSALS
ACTOR = "anonymous"
MAX_SOURCES_PER_MINUTE = 10_000
FLUSH_INTERVAL_S = 10.0
OTHER = "other"

REFUSED = MetricCounter(
    "docingest_api_anonymous_refusals_total",
    "Requests without a valid token that were refused",
    ["status", "code"],
)


@dataclass(frozen=True)
class MinuteOfRefusals:
    minute: int  # unix time // 60
    address: str
    by: dict[str, int]  # "<status>:<code>" -> count

    @property
    def count(self) -> int:
        return sum(self.by.values())


class RefusalLog:
    def __init__(self, max_sources: int = MAX_SOURCES_PER_MINUTE) -> None:
        self.max_sources = max_sources
        self._open: dict[int, dict[str, Counter[str]]] = {}

    def note(self, address: str, status: int, code: str, now: float | None = None) -> None:
        REFUSED.labels(status=str(status), code=code).inc()
        minute = int((time.time() if now is None else now) // 60)
        sources = self._open.setdefault(minute, {})
        if address not in sources and len(sources) >= self.max_sources:
            address = OTHER
        sources.setdefault(address, Counter())[f"{status}:{code}"] += 1

    def take(self, *, now: float | None = None, everything: bool = False) -> list[MinuteOfRefusals]:
        """The minutes that are over (all of them with `everything`), removed from memory."""
        current = int((time.time() if now is None else now) // 60)
        done = [m for m in self._open if everything or m < current]
        return [
            MinuteOfRefusals(minute, address, dict(counts))
            for minute in sorted(done)
            for address, counts in sorted(self._open.pop(minute).items())
        ]

    async def flush(self, pool: AsyncConnectionPool[DictConn], *, everything: bool = False) -> int:
        """Write the finished minutes; on a database error they are put back for next time."""
        pending = self.take(everything=everything)
        if not pending:
            return 0
        try:
            async with pool.connection() as conn, conn.transaction():
                for item in pending:
                    await _record(conn, item)
        except psycopg.Error:
            log.warning("could not record anonymous refusals", extra={"action": "event_error"})
            for item in pending:
                sources = self._open.setdefault(item.minute, {})
                sources.setdefault(item.address, Counter()).update(item.by)
            return 0
        return len(pending)

    async def run(self, pool: AsyncConnectionPool[DictConn]) -> None:
        """Flush finished minutes every few seconds until cancelled, then flush the rest."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.flush(pool)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush(pool, everything=True))


async def _record(conn: DictConn, item: MinuteOfRefusals) -> None:
    start = datetime.fromtimestamp(item.minute * 60, UTC)
    await events.record(
        conn,
        actor=ACTOR,
        action=ACTION,
        outcome="aggregated",
        detail={
            "address": item.address,
            "minute": start.isoformat(),
            "count": item.count,
            "by": item.by,
        },
    )
