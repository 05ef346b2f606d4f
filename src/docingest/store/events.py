"""The append-only `events` table: audit and processing events. Ids, codes and counts only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from docingest.store.db import DictConn
from docingest.store.records import Job

#: one row per source address and minute of refused anonymous requests (api/refusals.py);
#: noise by the retention policy (ops/audit_retention.py)
ANONYMOUS_REFUSALS = "auth.refused.anonymous"
#: the one column list every event insert writes (`record`, and store/jobs.py's status change)
INSERT = (
    "INSERT INTO docingest.events (actor, action, outcome, job_id, document_id,"
    " correlation_id, detail)"
)


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
        f"{INSERT} VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, action, outcome, job_id, document_id, correlation_id, Jsonb(dict(detail or {}))),
    )


async def record_for_job(
    conn: DictConn,
    job: Job,
    *,
    actor: str,
    action: str,
    outcome: str = "ok",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """An event about `job`, with its ids and correlation id."""
    await record(
        conn,
        actor=actor,
        action=action,
        outcome=outcome,
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
        detail=detail,
    )
