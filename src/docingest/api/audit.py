"""Audit events for API requests (45 CFR 164.312(b)): actor, action, ids, outcome and a
correlation id. Never document text, filenames or tokens."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID, uuid4, uuid5

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from docingest.api import break_glass
from docingest.api.auth import Principal
from docingest.api.errors import ApiError, error_response, handle_api_error
from docingest.api.state import AppState
from docingest.domain.errors import ErrorCode
from docingest.store import events
from docingest.store.db import DictConn
from docingest.store.records import Job

log = logging.getLogger(__name__)

# X-Correlation-Id values are namespaced per user under this id (never shared across users)
CORRELATION_NAMESPACE = UUID("2f1d6c52-8f0e-4b7a-9a43-6f1b0d0e7c11")
# Statuses that refuse a caller: no or bad token, not allowed, or an id that is not theirs
# (unknown and other users' ids answer the same 404, so both are recorded as refusals).
REFUSAL_STATUSES = frozenset({401, 403, 404})


def correlation_id(request: Request) -> UUID:
    """A new id; or, for an authenticated caller sending a UUID in `X-Correlation-Id`, that
    value namespaced to the caller: uuid5(namespace, "<user id>:<value>"). The same caller
    sending the same value gets the same id (the response's `X-Correlation-Id` says which), and
    no caller can file events under another user's correlation id. Anonymous callers' values
    are ignored."""
    principal: Principal | None = getattr(request.state, "principal", None)
    raw = request.headers.get("x-correlation-id")
    if principal is None or not raw:
        return uuid4()
    try:
        given = UUID(raw)
    except ValueError:
        return uuid4()
    return uuid5(CORRELATION_NAMESPACE, f"{principal.user_id}:{given}")


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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def refused(request: Request, exc: ApiError) -> None:
    """Record an `auth.refused` event for a refusing ApiError; other errors are not refusals.
    A caller without a valid token is counted in the per-minute aggregate instead
    (api/refusals.py). A database failure here is logged (ids only) and does not change the
    refusal's answer."""
    if exc.status not in REFUSAL_STATUSES:
        return
    principal: Principal | None = getattr(request.state, "principal", None)
    state: AppState = request.app.state.docingest
    if principal is None:
        state.refusals.note(client_address(request), exc.status, exc.code)
        return
    route = getattr(request.scope.get("route"), "path", "unmatched")  # template, never ids
    detail: dict[str, Any] = {"status": exc.status, "method": request.method, "route": route}
    try:
        async with state.pool.connection() as conn:
            await events.record(
                conn,
                actor=principal.actor,
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


_HTTP_CODES = {
    400: ErrorCode.MALFORMED_REQUEST.value,
    404: "not_found",
    405: "method_not_allowed",
    413: ErrorCode.TOO_LARGE.value,
}


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors (unknown route 404, 405, a body FastAPI cannot
    parse) in the error shape `{"error": {"code", "message"}}` instead of `{"detail": ...}`.
    Anonymous ones count as anonymous refusals."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if getattr(request.state, "principal", None) is None and exc.status_code in REFUSAL_STATUSES:
        state: AppState = request.app.state.docingest
        state.refusals.note(client_address(request), exc.status_code, code)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)
