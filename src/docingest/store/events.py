"""The append-only `events` table: audit and processing events. Ids, codes and counts only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from docingest.store.db import DictConn

#: one row per source address and minute of refused anonymous requests (api/refusals.py);
#: noise by the retention policy (ops/audit_retention.py)
ANONYMOUS_REFUSALS = "auth.refused.anonymous"


async def record(
    conn: DictConn,
    *,
    actor: str,
    action: str,
    outcome: str = "ok",
    job_id: UUID | None = None,
    document_id: UUID | None = None,
    correlation_id: UUID | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO docingest.events (actor, action, outcome, job_id, document_id,"
        " correlation_id, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, action, outcome, job_id, document_id, correlation_id, Jsonb(dict(detail or {}))),
    )
