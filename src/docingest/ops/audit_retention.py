"""Audit retention (`docingest audit prune`): keep what HIPAA requires, drop the noise.

45 CFR 164.316(b)(2)(i) keeps security documentation six years; audit rows about people and
documents (uploads, reads, searches, deletes, refusals of signed-in callers, webhook decisions,
processing events) are kept `DOCINGEST_AUDIT_RETENTION_DAYS` (default and minimum 2,192 days:
six years with their leap days). Rows that name nobody, the per-minute aggregates of refused
anonymous requests (api/refusals.py), are noise an attacker can grow: they are kept
`DOCINGEST_AUDIT_NOISE_RETENTION_DAYS` (default 90). Rows are deleted in batches (short
transactions), then the table is vacuumed. Only the schema owner can delete audit rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from docingest.store.db import DictConn
from docingest.store.events import ANONYMOUS_REFUSALS

NOISE_ACTIONS = (ANONYMOUS_REFUSALS,)
BATCH = 10_000


@dataclass(frozen=True)
class PruneResult:
    noise: int  # rows older than the noise retention
    expired: int  # rows older than the audit retention
    dry_run: bool


async def _delete_batched(conn: DictConn, where: str, params: dict[str, object]) -> int:
    total = 0
    while True:
        cur = await conn.execute(
            "DELETE FROM docingest.events WHERE event_id IN (SELECT event_id FROM"
            f" docingest.events WHERE {where} LIMIT {BATCH})",
            params,
        )
        total += cur.rowcount
        if cur.rowcount < BATCH:
            return total


async def _count(conn: DictConn, where: str, params: dict[str, object]) -> int:
    cur = await conn.execute(f"SELECT count(*) AS n FROM docingest.events WHERE {where}", params)
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def prune(
    conn: DictConn, *, retention: timedelta, noise_retention: timedelta, dry_run: bool = False
) -> PruneResult:
    noise_where = "action = ANY(%(noise)s) AND at < now() - %(noise_age)s"
    expired_where = "at < now() - %(age)s"
    params: dict[str, object] = {
        "noise": list(NOISE_ACTIONS),
        "noise_age": noise_retention,
        "age": retention,
    }
    run = _count if dry_run else _delete_batched
    noise = await run(conn, noise_where, params)
    expired = await run(conn, expired_where, params)
    return PruneResult(noise, expired, dry_run)
