"""`webhook_log`: the `webhook-id`s of signed callbacks already acted on (replay protection).

A row outlives the signature's timestamp tolerance by far, so a replay is refused either as
stale or as already seen. Expired rows are purged a few at a time by the receiver itself.
"""

from __future__ import annotations

from uuid import UUID

from docingest.store.db import DictConn

RETENTION_S = 7 * 24 * 3600
_PURGE_BATCH = 500


async def seen(conn: DictConn, webhook_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM docingest.webhook_log WHERE webhook_id = %s", (webhook_id,)
    )
    return await cur.fetchone() is not None


async def record(conn: DictConn, webhook_id: str, job_id: UUID) -> bool:
    """Claim `webhook_id` (inside the transaction that acts on it). False when it was already
    recorded: a concurrent delivery of the same id waits here for the first to commit."""
    cur = await conn.execute(
        "INSERT INTO docingest.webhook_log (webhook_id, job_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))"
        " ON CONFLICT (webhook_id) DO NOTHING RETURNING 1",
        (webhook_id, job_id, RETENTION_S),
    )
    return await cur.fetchone() is not None


async def purge_expired(conn: DictConn) -> int:
    cur = await conn.execute(
        "DELETE FROM docingest.webhook_log WHERE webhook_id IN (SELECT webhook_id"
        " FROM docingest.webhook_log WHERE expires_at < now() LIMIT %s)",
        (_PURGE_BATCH,),
    )
    return cur.rowcount
