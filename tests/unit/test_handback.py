"""Pending hand-backs: written at once when the database answers, kept and retried while it
does not, dropped when the job turned out to be someone else's."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from docingest.store.jobs import LeaseLost
from docingest.worker.handback import PendingHandBacks


class Flaky:
    """A hand-back whose first `failures` attempts find the database down."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or psycopg.OperationalError("connection refused")
        self.attempts = 0
        self.written = asyncio.Event()

    async def __call__(self) -> None:
        self.attempts += 1
        await asyncio.sleep(0)  # a real write awaits the database: others may run meanwhile
        if self.attempts <= self.failures:
            raise self.error
        self.written.set()


async def test_written_at_once_when_the_database_answers() -> None:
    pending, hand_back = PendingHandBacks(), Flaky(0)
    assert await pending.write(uuid.uuid4(), hand_back) is True
    assert hand_back.attempts == 1 and len(pending) == 0


async def test_kept_while_the_database_is_down_and_written_when_it_is_back() -> None:
    pending, hand_back = PendingHandBacks(retry_interval_s=0.01), Flaky(3)
    assert await pending.write(uuid.uuid4(), hand_back) is False
    assert len(pending) == 1
    retrier = asyncio.create_task(pending.keep_trying())
    try:
        async with asyncio.timeout(5):
            await hand_back.written.wait()
    finally:
        retrier.cancel()
    assert hand_back.attempts == 4 and len(pending) == 0


async def test_flush_before_a_claim_reports_what_is_still_pending() -> None:
    pending = PendingHandBacks()
    down, back = Flaky(10), Flaky(1)
    await pending.write(uuid.uuid4(), down)
    await pending.write(uuid.uuid4(), back)
    assert await pending.flush() == 1  # `back` landed, `down` still waits
    assert back.written.is_set() and not down.written.is_set()


async def test_a_newer_hand_back_for_the_same_job_replaces_the_older() -> None:
    pending, job = PendingHandBacks(), uuid.uuid4()
    older, newer = Flaky(1), Flaky(1)
    await pending.write(job, older)
    await pending.write(job, newer)
    assert await pending.flush() == 0
    assert (older.attempts, newer.attempts) == (1, 2)


async def test_a_job_taken_over_meanwhile_is_dropped_not_retried() -> None:
    pending, hand_back = PendingHandBacks(), Flaky(1)
    await pending.write(uuid.uuid4(), hand_back)
    hand_back.error = LeaseLost("taken over")
    hand_back.failures = 2
    assert await pending.flush() == 0
    assert hand_back.attempts == 2 and not hand_back.written.is_set()


async def test_a_late_variant_replaces_a_hand_back_that_could_not_be_written() -> None:
    """A deferral written late waits less: what it waited for may have been refused."""
    pending, on_time, late = PendingHandBacks(), Flaky(1), Flaky(0)
    await pending.write(uuid.uuid4(), on_time, late=late)
    assert await pending.flush() == 0
    assert (on_time.attempts, late.attempts) == (1, 1) and late.written.is_set()
    assert not on_time.written.is_set()


async def test_concurrent_flushes_write_each_hand_back_once() -> None:
    pending, slow = PendingHandBacks(), Flaky(1)
    await pending.write(uuid.uuid4(), slow)
    await asyncio.gather(pending.flush(), pending.flush(), pending.flush())
    assert slow.attempts == 2  # the failed first attempt, then exactly one write
