"""The BaseWorker: one class that drives every stage of every job (DESIGN.md §2).

Stateless: everything it knows is in Postgres. It claims a job with a lease, runs the stage
for the job's current status, commits the next status with the stage's writes, and goes on
until the job is terminal, must wait (transient error -> backoff via `next_attempt_at`), or
the worker is told to stop (SIGTERM -> finish within a grace period, else release).

Slots: `concurrency` jobs at once in the stages before embedding (parsing and chunking use
CPU and a child process each). A job that reaches `embedding_in_progress` leaves its slot
(it mostly waits on the provider) and the slot claims the next job, up to
`max_embedding_jobs` jobs embedding at once; this is how a worker comes to hold several
embedding jobs whose texts fill shared requests (`embed_batcher.py`). The batcher asks
`upstream_busy()` whether more input may still come from this worker's slots.

While it runs, a session of its own proves it is alive (`worker/liveness.py`): if the
process dies, other workers take its jobs at once instead of waiting out the lease. A
release, retry or failure that cannot be written because the database is down is kept and
written as soon as the database is back (`worker/handback.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import psycopg
from psycopg import sql

from docingest.domain.errors import (
    Deferred,
    DocingestError,
    ErrorCode,
    PermanentError,
    TransientError,
)
from docingest.domain.retry import RetryPolicy
from docingest.domain.states import JobStatus
from docingest.store import jobs
from docingest.store.jobs import LeaseLost
from docingest.store.records import Job
from docingest.worker import cleanup, metrics
from docingest.worker.context import StageContext
from docingest.worker.handback import PendingHandBacks
from docingest.worker.liveness import WorkerSession
from docingest.worker.stages import STAGES, hands_off

log = logging.getLogger(__name__)

SESSION_START_TIMEOUT_S = 30.0
#: the end of a shutdown grace kept for jobs to store their answered vectors (`_drain`)
STORE_MARGIN_S = 5.0


def _store_margin(grace_s: float) -> float:
    return min(STORE_MARGIN_S, grace_s / 4)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


def job_log_ids(job: Job) -> dict[str, str]:
    """Ids on every job log line. `correlation_id` is the one the upload request was given
    (stored on the job row), so one id follows a document from the API's upload line through
    every worker line to completion."""
    return {
        "job_id": str(job.job_id),
        "document_id": str(job.document_id),
        "correlation_id": str(job.correlation_id),
    }


@dataclass
class WorkerOptions:
    concurrency: int = 1
    lease_seconds: float = 60.0
    poll_interval_s: float = 2.0
    shutdown_grace_s: float = 20.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    excluded_statuses: tuple[JobStatus, ...] = ()
    #: jobs held at once in embedding (outside the slots); their texts share requests
    max_embedding_jobs: int = 32


class BaseWorker:
    def __init__(
        self, ctx: StageContext, *, dsn: str, options: WorkerOptions | None = None
    ) -> None:
        self.ctx = ctx
        self.dsn = dsn
        self.options = options or WorkerOptions()
        self.worker_id = ctx.worker_id
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], UUID] = {}  # running tasks and their jobs
        self._embedding: set[asyncio.Task[None]] = set()  # held jobs that left their slot
        self._handing_off: set[asyncio.Task[None]] = set()  # in a slot to submit a remote parse
        self._drained = False  # the last claim found fewer jobs than it asked for
        # something may have become claimable since that claim (see `_may_claim`)
        self._hinted = True
        # a claim failed on the wire: it may have committed (see `_release_unknown`)
        self._claim_unsure = False
        self.processed = 0
        self.session = WorkerSession(dsn, self.worker_id, on_alive=self._hint)
        self.handbacks = PendingHandBacks()
        if ctx.embed_batcher is not None:
            ctx.embed_batcher.upstream_busy = self.upstream_busy

    def request_stop(self) -> None:
        """Stop claiming; in-flight jobs get `shutdown_grace_s` to finish, then are released."""
        self._stopping.set()
        self._wake.set()

    async def run(
        self, *, once: bool = False, until: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Work until stopped. `once`: drain what is claimable now, then return. `until`: an
        extra stop condition checked whenever the worker is idle."""
        helpers = [
            asyncio.create_task(self._listen(), name="docingest-listener"),
            asyncio.create_task(self.session.keep(), name="docingest-session"),
            asyncio.create_task(self.handbacks.keep_trying(), name="docingest-handbacks"),
        ]
        log.info("worker started", extra={"action": "worker_start", "worker_id": self.worker_id})
        try:
            with contextlib.suppress(TimeoutError):  # claims wait for the session anyway
                await asyncio.wait_for(self.session.alive.wait(), SESSION_START_TIMEOUT_S)
            await self._loop(once=once, until=until)
        finally:
            await self._drain()
            await self.session.close()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            log.info("worker stopped", extra={"action": "worker_stop", "worker_id": self.worker_id})

    async def _loop(self, *, once: bool, until: Callable[[], Awaitable[bool]] | None) -> None:
        while not self._stopping.is_set():
            # cleared before claiming: a wake-up that arrives meanwhile (a job leaving its slot
            # for embedding, a NOTIFY) must start the next round, not wait for the poll
            self._wake.clear()
            claimed = await self._fill_slots()
            idle = not self._tasks and not claimed
            if idle and (once or (until is not None and await until())):
                return
            waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self._wake.wait())}
            waiters |= set(self._tasks)  # type: ignore[arg-type]
            done, pending = await asyncio.wait(
                waiters, timeout=self.options.poll_interval_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the poll: jobs become claimable by time too (a delay, a lease)
                self._hinted = True
            for w in pending:
                if w not in self._tasks:
                    w.cancel()

    def upstream_busy(self) -> bool:
        """Whether a job of this worker may still reach embedding soon: one is in a slot (not
        one that is only handing its file to a remote parser), or the last claim may have
        left work in the queue."""
        feeding = self._tasks.keys() - self._embedding - self._handing_off
        return bool(feeding) or not self._drained

    def _hint(self) -> None:
        """Something may have become claimable: claim at the next round."""
        self._hinted = True
        self._wake.set()

    def _may_claim(self) -> bool:
        """Whether a claim could find anything. After one that found fewer jobs than it asked
        for (the queue is empty), only a NOTIFY (every write that makes a job claimable now
        sends one), the poll, or a new session can change that; a slot freed meanwhile would
        claim nothing, so it does not ask (each claim is a round trip and a scan of the
        queue)."""
        return self._hinted or not self._drained

    def _room(self) -> int:
        """How many jobs this worker could start now: free slots, within the cap on jobs
        embedding (a job leaves its slot for embedding)."""
        if self._stopping.is_set():
            return 0
        in_slots = len(self._tasks) - len(self._embedding)
        return max(
            0,
            min(
                self.options.concurrency - in_slots,
                self.options.max_embedding_jobs - len(self._embedding),
            ),
        )

    def _poke_batcher(self) -> None:
        if self.ctx.embed_batcher is not None:
            self.ctx.embed_batcher.poke()

    def _enter_embedding(self) -> None:
        """The running job reaches embedding: it leaves its slot for the next claim."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._embedding.add(task)
            self._wake.set()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._embedding.discard(task)
        self._handing_off.discard(task)
        self._poke_batcher()

    async def _fill_slots(self) -> int:
        claimed = 0
        if len(self.handbacks) and await self.handbacks.flush():
            return claimed  # the database is still away: nothing could be claimed either
        if not self.session.alive.is_set():
            return claimed  # a job claimed now would look orphaned to the other workers
        if self._claim_unsure and not await self._release_unknown():
            return claimed
        while (room := self._room()) and self._may_claim():
            self._hinted = False  # a NOTIFY from now on may be one this claim does not see
            asked = min(room, jobs.MAX_CLAIM)
            try:
                async with self.ctx.pool.connection() as conn:
                    found = await jobs.claim_many(
                        conn,
                        self.worker_id,
                        self.options.lease_seconds,
                        self.options.excluded_statuses,
                        limit=asked,
                    )
            except psycopg.OperationalError:
                self._hinted = True
                self._claim_unsure = True
                log.warning("claim failed: database unavailable", extra={"action": "claim_error"})
                return claimed
            for job in found:
                claimed += 1
                metrics.JOBS_CLAIMED.inc()
                task = asyncio.create_task(self._process(job), name=f"job-{job.job_id}")
                self._tasks[task] = job.job_id
                task.add_done_callback(self._task_done)
            self._drained = len(found) < asked
            if self._drained:
                break
        self._poke_batcher()
        return claimed

    async def _release_unknown(self) -> bool:
        """After a claim that failed on the wire, give back what this worker holds in the
        database but is not running: that claim may have committed before its answer was
        lost (a restart of PostgreSQL at that moment left a job held for its whole lease).
        False while the database is still away."""
        try:
            async with self.ctx.pool.connection() as conn:
                freed = await jobs.release_unknown(conn, self.worker_id, set(self._tasks.values()))
        except psycopg.OperationalError:
            return False
        self._claim_unsure = False
        if freed:
            log.info(
                "jobs held by a lost claim given back",
                extra={"action": "lost_claim_released", "jobs": freed},
            )
        return True

    async def _drain(self) -> None:
        """Let in-flight jobs finish within the grace period (else release them), then give
        pending hand-backs the same time to land. The last part of the grace
        (`_store_margin`) is for jobs still waiting on the embedding provider: nothing more is
        sent, requests already out get the first half of it to come back (`stop_waiting`),
        and each job stores what was answered and gives its job back, so answers already
        paid for are not dropped with a cancelled job."""
        grace = self.options.shutdown_grace_s
        deadline = time.monotonic() + grace
        if self._tasks:
            margin = _store_margin(grace)
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace - margin)
            if pending and self.ctx.embed_batcher is not None:
                self.ctx.embed_batcher.stop_waiting(in_flight_s=margin / 2)
                _, pending = await asyncio.wait(pending, timeout=margin)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        while await self.handbacks.flush() and time.monotonic() < deadline:
            await asyncio.sleep(self.handbacks.retry_interval_s)

    async def _listen(self) -> None:
        """LISTEN for new work; reconnect a dropped listener. The poll interval is the fallback."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(jobs.CHANNEL)))
                    self._hint()  # what was sent while no one listened
                    async for _ in conn.notifies():
                        self._hint()
            except asyncio.CancelledError:
                raise
            except psycopg.Error:
                log.warning("listener lost; reconnecting", extra={"action": "listen_error"})
                await asyncio.sleep(self.options.poll_interval_s)

    async def _process(self, job: Job) -> None:
        lease_lost = asyncio.Event()
        current: list[Job] = [job]
        runner = asyncio.current_task()
        assert runner is not None
        beat = asyncio.create_task(self._heartbeat(current, lease_lost, runner))
        try:
            await self._advance_until_done(current)
        except asyncio.CancelledError:
            if lease_lost.is_set():  # the heartbeat found the lease gone before a write did
                await self._lease_lost(current[0])
                return
            await asyncio.shield(self._release(current[0]))
            if not self._stopping.is_set():
                raise
        except LeaseLost:
            await self._lease_lost(current[0])
        except Deferred as exc:
            await self._defer(current[0], exc)
        except PermanentError as exc:
            await self._fail(current[0], exc.code, exc.message)
        except TransientError as exc:
            await self._retry_later(current[0], exc.code, exc.message, exc.retry_after)
        except DocingestError as exc:
            await self._retry_later(current[0], exc.code, exc.message, None)
        except psycopg.errors.QueryCanceled:  # statement_timeout (store/db.py)
            await self._retry_later(
                current[0], ErrorCode.STATEMENT_TIMEOUT, "a statement ran past its deadline", None
            )
        except psycopg.OperationalError:
            await self._retry_later(
                current[0], ErrorCode.INTERNAL, "database connection lost", None
            )
        except Exception as exc:
            log.exception("stage crashed", extra={"action": "stage_crash", **job_log_ids(job)})
            await self._retry_later(
                current[0], ErrorCode.INTERNAL, f"unexpected {type(exc).__name__}", None
            )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _advance_until_done(self, current: list[Job]) -> None:
        job = current[0]
        if job.retry_count > self.options.retry.max_retries:
            # reclaimed after too many lost leases (e.g. a document that kills workers)
            raise PermanentError(
                ErrorCode.RETRIES_EXHAUSTED, "job was abandoned by workers too often"
            )
        task = asyncio.current_task()
        while not job.status.is_terminal:
            if job.status is JobStatus.EMBEDDING_IN_PROGRESS:
                self._enter_embedding()
            if task is not None:
                if hands_off(self.ctx, job.status):
                    self._handing_off.add(task)
                else:
                    self._handing_off.discard(task)
            stage = STAGES[job.status]
            started = time.perf_counter()
            job = await stage(self.ctx, job)
            metrics.STAGE_SECONDS.labels(stage=stage.__name__).observe(
                time.perf_counter() - started
            )
            current[0] = job
        self.processed += 1
        metrics.JOBS_FINISHED.labels(status=job.status.value).inc()
        log.info(
            "job finished",
            extra={"action": "job_finished", "status": job.status.value, **job_log_ids(job)},
        )

    async def _heartbeat(
        self, current: list[Job], lost: asyncio.Event, runner: asyncio.Task[None]
    ) -> None:
        interval = max(self.options.lease_seconds / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.ctx.pool.connection() as conn:
                    ok = await jobs.heartbeat(
                        conn, current[0], self.worker_id, self.options.lease_seconds
                    )
            except psycopg.Error:
                continue  # the lease still has time; try again
            if not ok:
                lost.set()
                runner.cancel()
                return

    async def _lease_lost(self, job: Job) -> None:
        log.warning("lease lost", extra={"action": "lease_lost", **job_log_ids(job)})
        await self._drop_if_deleted(job)

    async def _drop_if_deleted(self, job: Job) -> None:
        try:
            dropped = await cleanup.drop_if_deleted(self.ctx, job)
        except (psycopg.Error, DocingestError, OSError):
            log.warning("orphan check failed", extra={"action": "cleanup_error"})
            return
        if dropped:
            log.info(
                "document deleted while processing; its artifacts removed",
                extra={"action": "orphans_removed", "blobs": dropped, **job_log_ids(job)},
            )

    def _releaser(self, job: Job, delay_s: float) -> Callable[[], Awaitable[None]]:
        async def write() -> None:
            async with self.ctx.pool.connection() as conn:
                await jobs.release(conn, job, self.worker_id, delay_s=delay_s)

        return write

    async def _release(self, job: Job, delay_s: float = 0.0) -> None:
        await self.handbacks.write(job.job_id, self._releaser(job, delay_s))

    async def _defer(self, job: Job, deferred: Deferred) -> None:
        """Give the job back until later without spending its retry budget. Written late
        (the database was away), the wait is cut to the poll interval: what the job waited
        for (a parse callback) may have been refused meanwhile."""
        late = min(deferred.delay_s, self.options.poll_interval_s)
        await self.handbacks.write(
            job.job_id,
            self._releaser(job, deferred.delay_s),
            late=self._releaser(job, late),
        )
        log.info(
            "job waits",
            extra={
                "action": "job_deferred",
                **job_log_ids(job),
                "reason": deferred.reason,
                "delay_s": round(deferred.delay_s, 2),
            },
        )

    async def _fail(self, job: Job, code: str, message: str) -> None:
        async def write() -> None:
            async with self.ctx.pool.connection() as conn:
                failed = await jobs.fail(conn, job, self.worker_id, code, message)
            metrics.JOBS_FINISHED.labels(status=failed.status.value).inc()
            metrics.JOBS_FAILED.labels(status=failed.status.value, code=code).inc()
            self.processed += 1
            log.info(
                "job failed",
                extra={"action": "job_failed", "code": code, **job_log_ids(job)},
            )

        await self.handbacks.write(job.job_id, write)

    async def _retry_later(
        self, job: Job, code: str, message: str, retry_after: float | None
    ) -> None:
        decision = self.options.retry.decide(job.retry_count, retry_after=retry_after)
        if not decision.retry:
            await self._fail(
                job, ErrorCode.RETRIES_EXHAUSTED, f"gave up after retries; last: {code}"
            )
            return
        metrics.RETRIES.labels(code=code).inc()

        async def write() -> None:
            async with self.ctx.pool.connection() as conn:
                await jobs.release(
                    conn,
                    job,
                    self.worker_id,
                    delay_s=decision.delay_s,
                    error={"code": code, "message": message},
                )

        await self.handbacks.write(job.job_id, write)
        log.info(
            "job will retry",
            extra={
                "action": "job_retry",
                **job_log_ids(job),
                "code": code,
                "delay_s": round(decision.delay_s, 2),
            },
        )
