"""Which workers are alive, asked of PostgreSQL itself (migration 0016).

Queues built on Postgres (River, Oban, graphile-worker, Procrastinate, PgQueuer) rescue a
crashed worker's jobs by time only: a lease or heartbeat has to run out first. Postgres
already knows sooner. Every worker holds a session-level advisory lock on a connection of
its own (`worker/liveness.py`); when the process dies, its host vanishes (TCP keepalives)
or its connection is cut, the server ends that session and the lock is gone at once. The
claim query treats a job whose registered holder lost its lock as claimable
(`DEAD_WORKERS`), in addition to lease expiry, which stays the backstop for a worker that
is alive to TCP but makes no progress (frozen, stuck). A worker that loses its session
while alive loses its jobs the same way; every later write of its is fenced
(`store/jobs.py`), so the cost is repeated work, never a wrong row.

`pg_locks` and advisory locks need no privilege, so this works for the least-privileged
`docingest_worker` role. The session must be a real one: a transaction-pooling proxy
(PgBouncer `pool_mode=transaction`) cannot hold session locks, as it cannot hold LISTEN.
"""

from __future__ import annotations

from docingest.store.db import DictConn
from docingest.store.statuses import TERMINAL_SQL

LOCK_CLASS = 0x6C8A1E6F  # the advisory lock classid of worker sessions (two-int4 form)

# Right after a PostgreSQL restart every session is new and no worker holds its lock yet;
# live workers re-register within a second or two. Until this long after the server
# started, a missing lock proves nothing and only leases decide.
RESTART_GRACE_S = 10

HELD_LOCK_KEYS = f"""
SELECT l.objid AS lock_key FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.classid = {LOCK_CLASS}::oid AND l.objsubid = 2
  AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""The lock keys of the worker sessions alive in this database right now."""

DEAD_WORKERS = f"""
SELECT w.worker_id FROM docingest.worker_sessions AS w
WHERE pg_postmaster_start_time() < now() - make_interval(secs => {RESTART_GRACE_S})
  AND w.lock_key::oid NOT IN ({HELD_LOCK_KEYS})
"""
"""Registered workers whose session lock is gone: a fragment for the claim query."""

_FORGET_DEAD = f"""
DELETE FROM docingest.worker_sessions AS w
WHERE w.worker_id IN ({DEAD_WORKERS})
  AND NOT EXISTS (
    SELECT 1 FROM docingest.upload_jobs AS j
    WHERE j.claimed_by = w.worker_id
      AND j.status NOT IN {TERMINAL_SQL}
  )
"""


async def register(conn: DictConn, worker_id: str, lock_key: int | None = None) -> int:
    """Take this worker's session lock on `conn` (autocommit, kept open for the worker's
    life) and record which lock is its. `lock_key`: re-take the key of an earlier session
    after a reconnect. Returns the key. The lock is taken before the row exists, so no
    registered row ever lacks its lock while its worker lives."""
    while True:
        if lock_key is None:
            cur = await conn.execute("SELECT nextval('docingest.worker_lock_keys') AS key")
            row = await cur.fetchone()
            assert row is not None
            lock_key = int(row["key"])
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s) AS ok", (LOCK_CLASS, lock_key)
        )
        row = await cur.fetchone()
        if row is not None and row["ok"]:
            break
        lock_key = None  # held by another session (only after the key sequence cycled)
    await conn.execute(
        "INSERT INTO docingest.worker_sessions (worker_id, lock_key) VALUES (%s, %s)"
        " ON CONFLICT (worker_id) DO UPDATE SET lock_key = EXCLUDED.lock_key",
        (worker_id, lock_key),
    )
    await conn.execute(_FORGET_DEAD)
    return lock_key


async def unregister(conn: DictConn, worker_id: str) -> None:
    """A clean exit: forget this worker unless it still holds a job (a hand-back that could
    not be written); closing `conn` afterwards drops the lock, which frees such a job."""
    await conn.execute(
        "DELETE FROM docingest.worker_sessions AS w WHERE w.worker_id = %s"
        " AND NOT EXISTS (SELECT 1 FROM docingest.upload_jobs AS j"
        f" WHERE j.claimed_by = w.worker_id AND j.status NOT IN {TERMINAL_SQL})",
        (worker_id,),
    )


async def dead_workers(conn: DictConn) -> list[str]:
    """Registered workers whose session is gone (for status and tests)."""
    cur = await conn.execute(DEAD_WORKERS)
    return [str(r["worker_id"]) for r in await cur.fetchall()]
