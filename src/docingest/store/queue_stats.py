"""A cheap snapshot of the queue for `/metrics`, the dashboard and `docingest status`: jobs by
status, claimable depth, the queue lag (age of the oldest claimable job), and the jobs and
workers holding a live lease.

Three aggregate statements. The last two filter on the same predicate as the partial index
`upload_jobs_claimable`, so they read only the (small) non-terminal set; the count by status
is one grouped scan. Nothing here returns ids, users or names.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from docingest.domain.states import TERMINAL, JobStatus
from docingest.store.db import DictConn

# A literal list (not a parameter) so the planner can match the partial index predicate.
_NOT_TERMINAL = "status NOT IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(TERMINAL)))

_BY_STATUS = "SELECT status::text AS status, count(*) AS n FROM docingest.upload_jobs GROUP BY 1"

# Claimable now: the same conditions as the claim query in store/jobs.py. The age counts
# from `next_attempt_at`, i.e. how long the job has been waiting for a worker.
_CLAIMABLE = f"""
SELECT count(*) AS depth,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float8 AS oldest_s
FROM docingest.upload_jobs
WHERE {_NOT_TERMINAL}
  AND next_attempt_at <= now()
  AND (claimed_by IS NULL OR lease_expires_at < now())
"""

_LIVE_LEASES = f"""
SELECT count(DISTINCT claimed_by) AS workers, count(*) AS jobs FROM docingest.upload_jobs
WHERE {_NOT_TERMINAL} AND lease_expires_at >= now()
"""

_OLDEST_WAITING = f"""
SELECT job_id FROM docingest.upload_jobs WHERE {_NOT_TERMINAL} ORDER BY created_at LIMIT 1
"""


@dataclass(frozen=True)
class QueueSnapshot:
    by_status: dict[JobStatus, int]  # every status, zero when absent
    depth: int
    oldest_claimable_s: float  # the queue lag
    live_workers: int
    in_flight: int  # jobs held under a live lease


async def snapshot(conn: DictConn) -> QueueSnapshot:
    by_status = dict.fromkeys(JobStatus, 0)
    cur = await conn.execute(_BY_STATUS)
    for row in await cur.fetchall():
        by_status[JobStatus(row["status"])] = int(row["n"])
    cur = await conn.execute(_CLAIMABLE)
    claimable = await cur.fetchone()
    cur = await conn.execute(_LIVE_LEASES)
    live = await cur.fetchone()
    assert claimable is not None and live is not None  # aggregates always return one row
    return QueueSnapshot(
        by_status=by_status,
        depth=int(claimable["depth"]),
        oldest_claimable_s=float(claimable["oldest_s"]),
        live_workers=int(live["workers"]),
        in_flight=int(live["jobs"]),
    )


async def oldest_waiting_job(conn: DictConn) -> UUID | None:
    """The earliest-created job that is not terminal (an id: for operators, never metrics)."""
    cur = await conn.execute(_OLDEST_WAITING)
    row = await cur.fetchone()
    return row["job_id"] if row else None
