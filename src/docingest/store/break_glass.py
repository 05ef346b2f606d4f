"""Break-glass grants (emergency access, 45 CFR 164.312(a)(2)(ii)): time-boxed, revocable,
checked in the database on every request that uses one. The reason text stays in the grant
row; events carry ids only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from docingest.store import events
from docingest.store.db import DictConn

CLI_ACTOR = "ops:cli"


@dataclass(frozen=True)
class Grant:
    grant_id: UUID
    operator_id: UUID
    expires_at: datetime


async def create(conn: DictConn, operator_id: UUID, reason: str, ttl_minutes: int) -> Grant:
    """Insert a grant expiring `ttl_minutes` from now (database clock) and audit it."""
    grant_id = uuid4()
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO docingest.break_glass_grants (grant_id, operator_id, reason, expires_at)"
            " VALUES (%s, %s, %s, now() + make_interval(mins => %s)) RETURNING expires_at",
            (grant_id, operator_id, reason, ttl_minutes),
        )
        row = await cur.fetchone()
        assert row is not None
        await events.record(
            conn,
            actor=CLI_ACTOR,
            action="break_glass.granted",
            detail={
                "grant_id": str(grant_id),
                "operator_id": str(operator_id),
                "ttl_minutes": ttl_minutes,
            },
        )
    return Grant(grant_id, operator_id, row["expires_at"])


async def revoke(conn: DictConn, grant_id: UUID) -> bool:
    """Revoke a grant now; False when there is no such grant or it was already revoked."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE docingest.break_glass_grants SET revoked_at = now()"
            " WHERE grant_id = %s AND revoked_at IS NULL RETURNING grant_id",
            (grant_id,),
        )
        revoked = await cur.fetchone() is not None
        if revoked:
            await events.record(
                conn,
                actor=CLI_ACTOR,
                action="break_glass.revoked",
                detail={"grant_id": str(grant_id)},
            )
    return revoked


async def is_active(conn: DictConn, grant_id: UUID, operator_id: UUID) -> bool:
    """The grant exists for this operator, is not revoked and has not expired (database clock)."""
    cur = await conn.execute(
        "SELECT 1 FROM docingest.break_glass_grants WHERE grant_id = %s AND operator_id = %s"
        " AND revoked_at IS NULL AND expires_at > now()",
        (grant_id, operator_id),
    )
    return await cur.fetchone() is not None
