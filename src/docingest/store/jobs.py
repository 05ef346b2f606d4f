"""The queue: claim, heartbeat, fenced transitions, release and failure of `upload_jobs` rows.

Lessons from River, Oban, graphile-worker, Procrastinate and PgQueuer, applied:
- claim in one short autocommit statement (`FOR UPDATE SKIP LOCKED`), never holding a
  transaction open across an external call;
- expired leases are reclaimed by the claim query itself, not by a separate sweeper, and so
  are the jobs of a worker whose database session has ended (`store/liveness.py`), without
  waiting for its lease;
- every status change is fenced on `claimed_by` and `attempt`, so a worker that lost its
  lease cannot overwrite the job's new owner (zero rows updated -> `LeaseLost`);
- NOTIFY is sent right after the enqueueing transaction commits, in a transaction of its
  own that writes nothing (`notify`): see there for why not inside it.

Every status change goes through `_change_status`, the one function that writes
`upload_jobs.status`: it checks the transition rule (domain/states.py) and writes the status
and its `events` row in one transaction (a savepoint inside a caller's transaction), so the
audit trail never misses a change nor records one that did not commit. The public ways in:
`transition` and `fail` (a worker holding the lease), `record_parsed` (a worker or a parse
callback), `retry_failed` and `advance` (a user or an operator).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from docingest.domain.states import JobStatus, check_transition, failure_status
from docingest.pipeline.parsed_markdown import ParsedArtifact
from docingest.store import events
from docingest.store.db import DictConn
from docingest.store.liveness import DEAD_WORKERS
from docingest.store.records import Job
from docingest.store.statuses import FAILED_SQL, TERMINAL_SQL

log = logging.getLogger(__name__)

CHANNEL = "docingest_jobs"

# Settable alongside a transition; anything else is refused (identifiers are never user input).
_SETTABLE = frozenset(
    {
        "parsed_path",
        "parsed_sha256",
        "parser_name",
        "parser_version",
        "chunks_version",
        "embed_model",
        "embed_version",
        "progress",
        "parse_external_id",
        "parse_submitted_at",
        "callback_token_sha256",
        "parse_resubmits",
    }
)


class LeaseLost(Exception):
    """The job is no longer ours (lease expired and taken over, or state moved on)."""


@dataclass(frozen=True)
class StatusEvent:
    """Who changed a job's status and why: the `events` row written with the change."""

    actor: str
    action: str | None = None  # None: "job.<new status>"
    outcome: str = "ok"
    detail: Mapping[str, object] = field(default_factory=dict)


def worker_event(worker_id: str, **detail: object) -> StatusEvent:
    """A worker's own move; its actor is the worker (a terminal job's row no longer names
    its holder)."""
    return StatusEvent(actor=f"worker:{worker_id}", detail=detail)


def _event_of(rows: str) -> str:
    """A CTE body writing the event of `_event_params` once per row of the CTE `rows` (a
    job's job_id, document_id and correlation_id)."""
    return (
        events.INSERT
        + " SELECT %(_event_actor)s, %(_event_action)s, %(_event_outcome)s, job_id, document_id,"
        f" correlation_id, %(_event_detail)s FROM {rows}"
    )


def _event_params(event: StatusEvent, action: str) -> dict[str, Any]:
    """The parameters of `_event_of`; `action` when the event names none."""
    return {
        "_event_actor": event.actor,
        "_event_action": event.action or action,
        "_event_outcome": event.outcome,
        "_event_detail": Jsonb(dict(event.detail)),
    }


_WITH_EVENT = sql.SQL(
    "WITH moved AS ({update}), logged AS (" + _event_of("moved") + ") SELECT * FROM moved"
)


async def _change_status(
    conn: DictConn,
    src: JobStatus,
    dst: JobStatus,
    query: sql.SQL | sql.Composed,
    params: Mapping[str, Any],
    event: StatusEvent,
) -> Job | None:
    """The only writer of `upload_jobs.status`: `src -> dst` must be legal; `query` (an UPDATE
    fenced on `status = src`, RETURNING *, named parameters) and the event are one statement,
    so they commit together or not at all, in the caller's transaction or alone (one round
    trip; a transaction of their own cost four). None when the fence matched no row (nothing
    is written)."""
    check_transition(src, dst)
    cur = await conn.execute(
        _WITH_EVENT.format(update=query), {**params, **_event_params(event, f"job.{dst.value}")}
    )
    row = await cur.fetchone()
    return Job.from_row(row) if row is not None else None


def _claimable(t: str) -> str:
    """The claimable condition on the `upload_jobs` row aliased `t`: unclaimed, its lease
    run out, or its holder dead (the CTE `dead` of the claim query)."""
    return (
        f"{t}.status NOT IN {TERMINAL_SQL}"
        f" AND {t}.status <> ALL(%(excluded)s::docingest.job_status[])"
        f" AND {t}.next_attempt_at <= now()"
        f" AND ({t}.claimed_by IS NULL OR {t}.lease_expires_at < now()"
        f" OR {t}.claimed_by IN (SELECT worker_id FROM dead))"
    )


# Fair across users: a job's turn is its user's jobs in flight plus its place in that user's
# queue, so a user with nothing running goes first and a deep backlog is served round-robin
# with everyone else's (one user's backlog delays another's first document by at most the
# time a slot takes to free). Among equal turns, the most overdue first. Candidates are
# locked with SKIP LOCKED, so concurrent claimers take different jobs. A claimer whose own
# session lock is gone claims nothing: its worker notices the lost session only at its next
# check, and a job claimed in between would be orphaned at once (it could even take back
# its own in-flight job, spending the job's retry budget on every poll).
_CLAIM = f"""
WITH dead AS MATERIALIZED ({DEAD_WORKERS}
), running AS (
    SELECT user_id, count(*) AS n FROM docingest.upload_jobs
    WHERE claimed_by IS NOT NULL AND lease_expires_at >= now() AND status NOT IN {TERMINAL_SQL}
      AND claimed_by NOT IN (SELECT worker_id FROM dead)
    GROUP BY user_id
), ranked AS (
    SELECT job_id, user_id, next_attempt_at,
           row_number() OVER (PARTITION BY user_id ORDER BY next_attempt_at, job_id) AS nth
    FROM docingest.upload_jobs q
    WHERE {_claimable("q")}
), candidates AS (
    SELECT k.job_id, coalesce(r.n, 0) + k.nth AS turn, k.next_attempt_at
    FROM ranked k LEFT JOIN running r USING (user_id)
    ORDER BY turn, k.next_attempt_at
    LIMIT 16
)
UPDATE docingest.upload_jobs AS j
SET claimed_by = %(worker)s,
    lease_expires_at = now() + make_interval(secs => %(lease)s),
    attempt = j.attempt + 1,
    retry_count = j.retry_count + (CASE WHEN j.claimed_by IS NULL THEN 0 ELSE 1 END),
    updated_at = now()
FROM (
    SELECT u.job_id FROM docingest.upload_jobs u JOIN candidates cand USING (job_id)
    WHERE {_claimable("u")}
    ORDER BY cand.turn, cand.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE OF u SKIP LOCKED
) AS c
WHERE j.job_id = c.job_id
  AND %(worker)s NOT IN (SELECT worker_id FROM dead)
RETURNING j.*
"""


#: the most jobs one claim takes (its candidates: the fair order's first 16)
MAX_CLAIM = 16


async def claim_many(
    conn: DictConn,
    worker_id: str,
    lease_s: float,
    excluded: tuple[JobStatus, ...] = (),
    *,
    limit: int,
) -> list[Job]:
    """Claim up to `limit` claimable jobs in fair order (above), reclaiming expired leases
    and dead workers' jobs. Autocommit, one statement: a worker with several free slots
    fills them with one round trip, and learns from a short answer that the queue is empty
    without asking again."""
    params = {
        "worker": worker_id,
        "lease": lease_s,
        "excluded": [s.value for s in excluded],
        "limit": max(1, min(limit, MAX_CLAIM)),
    }
    cur = await conn.execute(_CLAIM, params)
    return [Job.from_row(row) for row in await cur.fetchall()]


async def heartbeat(conn: DictConn, job: Job, worker_id: str, lease_s: float) -> bool:
    cur = await conn.execute(
        "UPDATE docingest.upload_jobs SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE job_id = %s AND claimed_by = %s AND attempt = %s RETURNING 1",
        (lease_s, job.job_id, worker_id, job.attempt),
    )
    return await cur.fetchone() is not None


async def transition(
    conn: DictConn,
    job: Job,
    worker_id: str,
    dst: JobStatus,
    *,
    sets: Mapping[str, Any] | None = None,
    event: StatusEvent | None = None,
) -> Job:
    """Move `job` to `dst`, fenced on (status, claimed_by, attempt), with its event (by
    default the worker's `job.<dst>`). Run it inside the same transaction as the writes that
    justify the new status. Progress resets the retry budget."""
    assignments, params = _assignments(sets)
    params.update(
        dst=dst.value,
        job_id=job.job_id,
        src=job.status.value,
        worker=worker_id,
        attempt=job.attempt,
    )
    query = sql.SQL(
        "UPDATE docingest.upload_jobs SET status = %(dst)s, retry_count = 0, last_error = NULL,"
        " updated_at = now(){release}{extra}"
        " WHERE job_id = %(job_id)s AND status = %(src)s AND claimed_by = %(worker)s"
        " AND attempt = %(attempt)s RETURNING *"
    ).format(
        # a terminal job holds no lease
        release=sql.SQL(", claimed_by = NULL, lease_expires_at = NULL" if dst.is_terminal else ""),
        extra=sql.SQL("").join(sql.SQL(", ") + a for a in assignments),
    )
    moved = await _change_status(
        conn, job.status, dst, query, params, event or worker_event(worker_id)
    )
    if moved is None:
        raise LeaseLost(str(job.job_id))
    return moved


def _assignments(sets: Mapping[str, Any] | None) -> tuple[list[sql.Composable], dict[str, Any]]:
    """`column = %(column)s` for each allow-listed column, and the parameters."""
    sets = dict(sets or {})
    unknown = set(sets) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable: {sorted(unknown)}")
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in sets
    ]
    params: dict[str, Any] = {k: (Jsonb(v) if k == "progress" else v) for k, v in sets.items()}
    return assignments, params


async def update_fields(conn: DictConn, job: Job, worker_id: str, sets: Mapping[str, Any]) -> Job:
    """Write allow-listed columns of a job we hold (fenced), without a status change."""
    assignments, params = _assignments(sets)
    params.update(job_id=job.job_id, src=job.status.value, worker=worker_id, attempt=job.attempt)
    query = sql.SQL(
        "UPDATE docingest.upload_jobs SET updated_at = now(){extra}"
        " WHERE job_id = %(job_id)s AND status = %(src)s AND claimed_by = %(worker)s"
        " AND attempt = %(attempt)s RETURNING *"
    ).format(extra=sql.SQL("").join(sql.SQL(", ") + a for a in assignments))
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    if row is None:
        raise LeaseLost(str(job.job_id))
    return Job.from_row(row)


async def set_progress(conn: DictConn, job: Job, worker_id: str, **counters: float) -> None:
    """Move progress counters (fenced) without changing status; progress resets retries."""
    cur = await conn.execute(
        "UPDATE docingest.upload_jobs SET progress = progress || %s, retry_count = 0,"
        " updated_at = now() WHERE job_id = %s AND status = %s AND claimed_by = %s"
        " AND attempt = %s RETURNING 1",
        (Jsonb(counters), job.job_id, job.status.value, worker_id, job.attempt),
    )
    if await cur.fetchone() is None:
        raise LeaseLost(str(job.job_id))


async def release(
    conn: DictConn,
    job: Job,
    worker_id: str,
    *,
    delay_s: float = 0.0,
    error: Mapping[str, Any] | None = None,
) -> bool:
    """Give the job back: claimable again after `delay_s`. With `error`, it counts as a retry."""
    cur = await conn.execute(
        "UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL,"
        " next_attempt_at = now() + make_interval(secs => %(delay)s),"
        " retry_count = retry_count + %(inc)s, last_error = coalesce(%(err)s, last_error),"
        " updated_at = now()"
        " WHERE job_id = %(job_id)s AND claimed_by = %(worker)s AND attempt = %(attempt)s"
        " RETURNING 1",
        {
            "delay": delay_s,
            "inc": 1 if error else 0,
            "err": Jsonb(dict(error)) if error else None,
            "job_id": job.job_id,
            "worker": worker_id,
            "attempt": job.attempt,
        },
    )
    ok = await cur.fetchone() is not None
    if ok and delay_s <= 0:
        await notify(conn)
    return ok


async def fail(conn: DictConn, job: Job, worker_id: str, code: str, message: str) -> Job:
    """End the job in the `failed_*` status of its current stage (fenced), keeping where to
    resume; its event carries the error code and stage, never the message."""
    dst = failure_status(job.status)
    query = sql.SQL(
        "UPDATE docingest.upload_jobs SET status = %(dst)s, resume_status = status,"
        " last_error = %(err)s, claimed_by = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE job_id = %(job_id)s AND status = %(src)s AND claimed_by = %(worker)s"
        " AND attempt = %(attempt)s RETURNING *"
    )
    params = {
        "dst": dst.value,
        "err": Jsonb({"code": code, "message": message, "stage": job.status.value}),
        "job_id": job.job_id,
        "src": job.status.value,
        "worker": worker_id,
        "attempt": job.attempt,
    }
    event = StatusEvent(
        actor=f"worker:{worker_id}",
        outcome="failed",
        detail={"code": code, "stage": job.status.value},
    )
    failed = await _change_status(conn, job.status, dst, query, params, event)
    if failed is None:
        raise LeaseLost(str(job.job_id))
    return failed


async def notify(conn: DictConn) -> None:
    """Tell the listening workers that a job became claimable. Call it after the write that
    made it so has committed, outside any transaction: PostgreSQL lets one transaction that
    sent a NOTIFY commit at a time, holding a database-wide lock through its commit's WAL
    flush, so a NOTIFY inside every upload's statement queued the uploads one behind the
    other (at 8 workers, uploads spent over a third of their statement time waiting for that
    lock). Alone, the NOTIFY's transaction writes no WAL to flush and holds the lock for
    microseconds. Lost between the two (a crash, or the connection failing now: logged, not
    raised, as the write it announces has committed), the job waits for the workers' poll."""
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        raise RuntimeError("notify inside a transaction would hold the commit lock")
    try:
        await conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(CHANNEL)))
    except psycopg.Error as exc:
        log.warning(
            "wake-up not sent; the workers' poll finds the job",
            extra={"action": "notify_error", "error": type(exc).__name__},
        )


_RELEASE_UNKNOWN = (
    "WITH freed AS ("
    " UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL,"
    " next_attempt_at = now(), updated_at = now()"
    f" WHERE claimed_by = %(worker)s AND status NOT IN {TERMINAL_SQL}"
    " AND NOT (job_id = ANY(%(known)s::uuid[])) RETURNING job_id"
    ") SELECT count(*) AS n FROM freed"
)


async def release_unknown(conn: DictConn, worker_id: str, known: Collection[UUID]) -> int:
    """Give back every job held under `worker_id` but not in `known` (the jobs the worker is
    running), claimable at once with a NOTIFY; how many. A claim whose answer was lost with
    the connection may still have committed: without this, its job would wait out its lease
    (the worker is alive, so it is not a dead worker's job either). Autocommit, one statement."""
    cur = await conn.execute(_RELEASE_UNKNOWN, {"worker": worker_id, "known": list(known)})
    row = await cur.fetchone()
    freed = int(row["n"]) if row else 0
    if freed:
        await notify(conn)
    return freed


async def get(conn: DictConn, job_id: UUID, user_id: UUID | None = None) -> Job | None:
    """A job by id; with `user_id`, only when it belongs to that user."""
    if user_id is None:
        cur = await conn.execute("SELECT * FROM docingest.upload_jobs WHERE job_id = %s", (job_id,))
    else:
        cur = await conn.execute(
            "SELECT * FROM docingest.upload_jobs WHERE job_id = %s AND user_id = %s",
            (job_id, user_id),
        )
    row = await cur.fetchone()
    return Job.from_row(row) if row else None


async def get_by_document(conn: DictConn, document_id: UUID, user_id: UUID | None) -> Job | None:
    """A document's job; with `user_id`, only when it belongs to that user."""
    cur = await conn.execute(
        "SELECT * FROM docingest.upload_jobs WHERE document_id = %s"
        " AND (%s::uuid IS NULL OR user_id = %s)",
        (document_id, user_id, user_id),
    )
    row = await cur.fetchone()
    return Job.from_row(row) if row else None


async def retry_failed(
    conn: DictConn, job_id: UUID, event: StatusEvent, *, max_user_retries: int | None = None
) -> Job | None:
    """Operator/user retry: a `failed_*` job resumes from the stage that failed. None if the
    job is not in a failed state, or (with `max_user_retries`, a user's retry) when it was
    already retried that often: the budget counts every retry of the job's life, so retrying
    cannot re-run a failing parse without end."""
    cur = await conn.execute(
        "SELECT status, resume_status FROM docingest.upload_jobs"
        f" WHERE job_id = %s AND status IN {FAILED_SQL} AND resume_status IS NOT NULL",
        (job_id,),
    )
    found = await cur.fetchone()
    if found is None:
        return None
    src, dst = JobStatus(found["status"]), JobStatus(found["resume_status"])
    query = sql.SQL(
        "UPDATE docingest.upload_jobs SET status = %(dst)s, resume_status = NULL,"
        " retry_count = 0, last_error = NULL, next_attempt_at = now(), claimed_by = NULL,"
        " lease_expires_at = NULL, updated_at = now(), user_retries = user_retries + 1"
        " WHERE job_id = %(job_id)s AND status = %(src)s AND resume_status = %(dst)s"
        " AND (%(max)s::integer IS NULL OR user_retries < %(max)s::integer) RETURNING *"
    )
    params = {"job_id": job_id, "src": src.value, "dst": dst.value, "max": max_user_retries}
    retried = await _change_status(conn, src, dst, query, params, event)
    if retried is not None:
        await notify(conn)
    return retried


async def advance(conn: DictConn, job_id: UUID, actor: str) -> Job | None:
    """Admin: re-evaluate a stuck job. Failed -> retry; non-terminal -> drop any lease and make
    it claimable now (its stage re-runs idempotently); complete -> unchanged. Each case
    writes one `job.advance` event naming the status the job is left in."""
    job = await retry_failed(conn, job_id, StatusEvent(actor=actor, action="job.advance"))
    if job is not None:
        return job
    async with conn.transaction():
        cur = await conn.execute(
            f"UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL,"
            f" next_attempt_at = now(), updated_at = now()"
            f" WHERE job_id = %s AND status NOT IN {TERMINAL_SQL} RETURNING *",
            (job_id,),
        )
        row = await cur.fetchone()
        job = Job.from_row(row) if row is not None else await get(conn, job_id)
        if job is not None:
            detail = {"status": job.status.value}
            await events.record_for_job(conn, job, actor=actor, action="job.advance", detail=detail)
    if row is not None:
        await notify(conn)
    return job


# A parse callback may act on a job waiting in parse_queued that no worker holds right now
# (a worker polling the same job holds a live lease, so the two can never both complete it).
_WAITING_FOR_PARSE = (
    "job_id = %(job_id)s AND status = 'parse_queued'"
    " AND (claimed_by IS NULL OR lease_expires_at < now())"
)


async def record_parsed(
    conn: DictConn,
    job: Job,
    artifact: ParsedArtifact,
    *,
    parser_name: str,
    parser_version: str,
    event: StatusEvent,
    worker_id: str | None = None,
) -> Job | None:
    """parse_queued -> parsed, recording the stored artifact: by the worker holding the job
    (`worker_id`: fenced on its lease, LeaseLost if lost), or from a parse callback
    (`worker_id` None: only while no worker holds the job, see above; then claimable at once:
    the caller sends `notify` once its transaction has committed; None when the job is not
    waiting or is held). The artifact is put in the blob store before; run it in the
    transaction that records whatever else came with it."""
    sets = {
        "parsed_path": artifact.key,
        "parsed_sha256": artifact.sha256,
        "parser_name": parser_name,
        "parser_version": parser_version,
    }
    if worker_id is not None:
        return await transition(conn, job, worker_id, JobStatus.PARSED, sets=sets, event=event)
    assignments, params = _assignments(sets)
    params.update(job_id=job.job_id, document_id=job.document_id)
    query = sql.SQL(
        "UPDATE docingest.upload_jobs SET status = 'parsed', retry_count = 0, last_error = NULL,"
        " claimed_by = NULL, lease_expires_at = NULL, next_attempt_at = now(),"
        " updated_at = now(){extra}"
        " WHERE document_id = %(document_id)s AND " + _WAITING_FOR_PARSE + " RETURNING *"
    ).format(extra=sql.SQL("").join(sql.SQL(", ") + a for a in assignments))
    return await _change_status(
        conn, JobStatus.PARSE_QUEUED, JobStatus.PARSED, query, params, event
    )


# the hint's writes in one statement: one commit, not two (and one round trip)
_WAKE_PARSE = (
    "WITH woken AS (UPDATE docingest.upload_jobs SET next_attempt_at = now(), updated_at = now()"
    " WHERE " + _WAITING_FOR_PARSE + " RETURNING job_id, document_id, correlation_id"
    "), logged AS (" + _event_of("woken") + ") SELECT job_id FROM woken"
)


async def wake_parse(conn: DictConn, job_id: UUID, event: StatusEvent) -> bool:
    """A parse hint: make a waiting parse job claimable now, so a worker polls the parser,
    with `event` (its action required) in the same statement and a NOTIFY once committed.
    False, and nothing written, when the job is not waiting or is held."""
    assert event.action is not None
    cur = await conn.execute(_WAKE_PARSE, {"job_id": job_id, **_event_params(event, event.action)})
    if await cur.fetchone() is None:
        return False
    await notify(conn)
    return True
