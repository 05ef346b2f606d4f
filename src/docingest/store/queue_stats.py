"""A cheap snapshot of the queue for `/metrics`: jobs by status, claimable depth, the age of
the oldest claimable job and the number of workers holding a live lease.

Three aggregate statements. The last two filter on the same predicate as the partial index
`upload_jobs_claimable`, so they read only the (small) non-terminal set; the count by status
is one grouped scan. Nothing here returns ids, users or names.
"""

from __future__ import annotations

from dataclasses import dataclass

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

_LIVE_WORKERS = f"""
SELECT count(DISTINCT claimed_by) AS n FROM docingest.upload_jobs
WHERE {_NOT_TERMINAL} AND lease_expires_at >= now()
"""


@dataclass(frozen=True)
class QueueSnapshot:
    by_status: dict[JobStatus, int]  # every status, zero when absent
    depth: int
    oldest_claimable_s: float
    live_workers: int


async def snapshot(conn: DictConn) -> QueueSnapshot:
    by_status = dict.fromkeys(JobStatus, 0)
    cur = await conn.execute(_BY_STATUS)
    for row in await cur.fetchall():
        by_status[JobStatus(row["status"])] = int(row["n"])
    cur = await conn.execute(_CLAIMABLE)
    claimable = await cur.fetchone()
    cur = await conn.execute(_LIVE_WORKERS)
    live = await cur.fetchone()
    assert claimable is not None and live is not None  # aggregates always return one row
    return QueueSnapshot(
        by_status=by_status,
        depth=int(claimable["depth"]),
        oldest_claimable_s=float(claimable["oldest_s"]),
        live_workers=int(live["n"]),
    )
