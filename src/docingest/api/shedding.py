"""Load shedding: refuse what the API cannot take now with 503 + Retry-After, instead of
queueing it until clients time out or answering 500.

Both refusals happen before anything is written, so a client may always retry them:

- `overloaded`: more than `max_inflight` requests in flight. A pure-ASGI wrapper counts them,
  so a refused request costs no routing, authentication or database connection. Health,
  readiness and metrics are never shed: an orchestrator must still see an overloaded API.
- `database_busy`: no pool connection within the pool timeout (`PoolTimeout`), the pool's
  waiting queue full (`TooManyRequests`), or the database refusing or dropping connections;
  all are `psycopg.OperationalError`s. An upload acquires its connection before it reads the
  body and writes the document and its job in one transaction, so a 503 leaves no document;
  a retry after an ambiguous commit is answered by the per-user dedupe (`duplicate: true`).
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from docingest.api.errors import error_response

log = logging.getLogger(__name__)

NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})
OVERLOADED_RETRY_AFTER_S = 1
DATABASE_BUSY_RETRY_AFTER_S = 2

SHED = Counter("docingest_api_shed_total", "Requests refused with 503 to shed load", ["reason"])
INFLIGHT = Gauge(
    "docingest_api_inflight_requests", "Requests being served (health and metrics excluded)"
)


class InflightLimiter:
    """ASGI middleware answering 503 `overloaded` while `max_inflight` requests are served.

    A request counts from its arrival until the app returns (its response fully sent)."""

    def __init__(self, app: ASGIApp, max_inflight: int) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.inflight = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            SHED.labels(reason="overloaded").inc()
            response = error_response(
                503,
                "overloaded",
                "too many requests in flight; retry later",
                {"Retry-After": str(OVERLOADED_RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
            return
        self.inflight += 1
        INFLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            INFLIGHT.dec()


async def handle_database_busy(_: Request, exc: Exception) -> JSONResponse:
    """`psycopg.OperationalError` (pool timeout, pool queue full, connection lost) -> 503."""
    assert isinstance(exc, psycopg.OperationalError)
    SHED.labels(reason="database_busy").inc()
    # the class name only: server messages may quote statement parameters
    log.warning("database busy", extra={"action": "shed", "exc_class": type(exc).__name__})
    return error_response(
        503,
        "database_busy",
        "the database is busy; retry later",
        {"Retry-After": str(DATABASE_BUSY_RETRY_AFTER_S)},
    )
