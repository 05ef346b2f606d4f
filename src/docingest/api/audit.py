"""Audit events for API requests (45 CFR 164.312(b)): actor, action, ids, outcome and a
correlation id. Never document text, filenames or tokens."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID, uuid4

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse

from docingest.api import break_glass
from docingest.api.auth import Principal
from docingest.api.errors import ApiError, handle_api_error
from docingest.api.state import AppState
from docingest.store import events
from docingest.store.db import DictConn
from docingest.store.records import Job

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Statuses that refuse a caller: no or bad token, not allowed, or an id that is not theirs
# (unknown and other users' ids answer the same 404, so both are recorded as refusals).
REFUSAL_STATUSES = frozenset({401, 403, 404})


def correlation_id(request: Request) -> UUID:
    """The caller's `X-Correlation-Id` when it is a UUID, else a new one."""
    raw = request.headers.get("x-correlation-id")
    try:
        return UUID(raw) if raw else uuid4()
    except ValueError:
        return uuid4()


def remember(request: Request, principal: Principal) -> None:
    """Keep the authenticated caller on the request so a later refusal names its actor."""
    request.state.principal = principal


async def job_read(conn: DictConn, principal: Principal, action: str, job: Job) -> None:
    """One read of one job or document: the event carries the document's own correlation id.
    A read under a break-glass grant is a `break_glass.read` naming the grant, and counted."""
    detail: dict[str, str] = {}
    if principal.grant_id is not None:
        action, detail = "break_glass.read", {"grant_id": str(principal.grant_id), "read": action}
    await events.record(
        conn,
        actor=principal.actor,
        action=action,
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
        detail=detail,
    )
    if principal.grant_id is not None:
        break_glass.READS.inc()


async def refused(request: Request, exc: ApiError) -> None:
    """Record an `auth.refused` event for a refusing ApiError; other errors are not refusals.
    A database failure here is logged (ids only) and does not change the refusal's answer."""
    if exc.status not in REFUSAL_STATUSES:
        return
    principal: Principal | None = getattr(request.state, "principal", None)
    route = getattr(request.scope.get("route"), "path", "unmatched")  # template, never ids
    detail: dict[str, Any] = {"status": exc.status, "method": request.method, "route": route}
    state: AppState = request.app.state.docingest
    try:
        async with state.pool.connection() as conn:
            await events.record(
                conn,
                actor=principal.actor if principal else ANONYMOUS,
                action="auth.refused",
                outcome=exc.code,
                correlation_id=correlation_id(request),
                detail=detail,
            )
    except psycopg.Error:
        log.warning("could not record a refusal", extra={"action": "event_error"})


async def handle_audited_api_error(request: Request, exc: Exception) -> JSONResponse:
    """The ApiError handler with refusals audited."""
    assert isinstance(exc, ApiError)
    await refused(request, exc)
    return await handle_api_error(request, exc)
