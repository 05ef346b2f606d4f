"""Aggregates for the admin dashboard beyond the queue snapshot: recent completions, failed
jobs by error code, and the circuit breakers. Counts, codes and service names only: no ids,
users, filenames or text.
"""

from __future__ import annotations

from dataclasses import dataclass

from docingest.domain.circuit import CircuitState
from docingest.domain.states import FAILED
from docingest.store.db import DictConn

# A terminal job is not updated again (a retry moves it out of the terminal set), so
# `updated_at` of a complete job is when it completed.
_COMPLETED = """
SELECT count(*) FILTER (WHERE updated_at > now() - interval '5 minutes') AS last_5,
       count(*) FILTER (WHERE updated_at > now() - interval '60 minutes') AS last_60
FROM docingest.upload_jobs
WHERE status = 'complete' AND updated_at > now() - interval '60 minutes'
"""

_FAILURES = """
SELECT coalesce(last_error->>'code', 'unknown') AS code, count(*) AS n
FROM docingest.upload_jobs WHERE status = ANY(%s::docingest.job_status[])
GROUP BY 1 ORDER BY 2 DESC, 1
"""

_CIRCUITS = (
    "SELECT service, state, failures, reason FROM docingest.circuit_breakers ORDER BY service"
)


@dataclass(frozen=True)
class CircuitRow:
    service: str
    state: CircuitState
    failures: int
    reason: str | None


@dataclass(frozen=True)
class DashboardStats:
    completed: dict[int, int]  # window in minutes -> jobs completed within it
    failures_by_code: list[tuple[str, int]]  # most frequent first
    circuits: list[CircuitRow]


async def read(conn: DictConn) -> DashboardStats:
    cur = await conn.execute(_COMPLETED)
    done = await cur.fetchone()
    assert done is not None  # an aggregate always returns one row
    cur = await conn.execute(_FAILURES, ([s.value for s in sorted(FAILED)],))
    failures = [(str(r["code"]), int(r["n"])) for r in await cur.fetchall()]
    cur = await conn.execute(_CIRCUITS)
    circuits = [
        CircuitRow(r["service"], CircuitState(r["state"]), int(r["failures"]), r["reason"])
        for r in await cur.fetchall()
    ]
    return DashboardStats(
        completed={5: int(done["last_5"]), 60: int(done["last_60"])},
        failures_by_code=failures,
        circuits=circuits,
    )
