"""Hand-backs that must land: a job's release, retry or failure that could not be written
because the database was unreachable is kept and written as soon as it is back.

Without this, a job whose release failed during a PostgreSQL restart stayed claimed by a
live worker until its lease ran out (60 s by default). Every hand-back is fenced on the
claim (`store/jobs.py`), so writing it late is safe: if the job has meanwhile been taken
over, the write changes nothing and is dropped.

A hand-back may come with a `late` variant, written instead once the first attempt failed:
a job deferred to wait for a parse callback must not wait the full callback timeout when
the callback may have been refused while the job could not be released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import psycopg

from docingest.store.jobs import LeaseLost

log = logging.getLogger(__name__)

HandBack = Callable[[], Awaitable[None]]


class PendingHandBacks:
    """At most one pending hand-back per job (the newest wins), retried every
    `retry_interval_s` by `keep_trying`, and before every claim (`flush`)."""

    def __init__(self, retry_interval_s: float = 0.5) -> None:
        self.retry_interval_s = retry_interval_s
        self._pending: dict[UUID, HandBack] = {}
        self._added = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time: each hand-back written once

    def __len__(self) -> int:
        return len(self._pending)

    async def write(
        self, job_id: UUID, hand_back: HandBack, *, late: HandBack | None = None
    ) -> bool:
        """Write `hand_back` now; if the database is unreachable, keep it (or `late`, when
        given) for later. True when it was written now (False also when the job turned out
        not to be ours)."""
        try:
            await hand_back()
        except LeaseLost:
            log.warning(
                "lease lost before the hand-back",
                extra={"action": "lease_lost", "job_id": str(job_id)},
            )
            self._pending.pop(job_id, None)
            return False
        except psycopg.Error:
            self._pending[job_id] = late or hand_back
            self._added.set()
            log.warning(
                "database unavailable; hand-back kept until it is back",
                extra={"action": "handback_pending", "job_id": str(job_id)},
            )
            return False
        self._pending.pop(job_id, None)
        return True

    async def flush(self) -> int:
        """Try every pending hand-back once; returns how many are still pending."""
        async with self._flushing:
            await self._flush_once()
        return len(self._pending)

    async def _flush_once(self) -> None:
        for job_id, hand_back in list(self._pending.items()):
            try:
                await hand_back()
            except LeaseLost:
                log.info(
                    "pending hand-back dropped: the job moved on",
                    extra={"action": "handback_dropped", "job_id": str(job_id)},
                )
            except psycopg.Error:
                continue
            else:
                log.info(
                    "pending hand-back written",
                    extra={"action": "handback_written", "job_id": str(job_id)},
                )
            if self._pending.get(job_id) is hand_back:  # not replaced meanwhile
                del self._pending[job_id]

    async def keep_trying(self) -> None:
        """Run until cancelled: flush whenever something is pending."""
        while True:
            await self._added.wait()
            self._added.clear()
            while await self.flush():
                await asyncio.sleep(self.retry_interval_s)
