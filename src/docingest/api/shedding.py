"""Load shedding: refuse what the API cannot take now with 503 + Retry-After, instead of
queueing it until clients time out or answering 500.

Refusals happen before anything is written, so a client may always retry them:

- `overloaded`, `rate_limited`, `too_many_requests`: the admission lanes (api/admission.py)
  refuse a request before routing, authentication or any database connection.
- `database_busy`: no pool connection within the pool timeout (`PoolTimeout`), the pool's
  waiting queue full (`TooManyRequests`), or the database refusing or dropping connections;
  all are `psycopg.OperationalError`s. An upload takes its connection only once its body is
  stored, and writes the document and its job in one transaction, so a 503 leaves no
  document (the stored blob is removed); a retry after an ambiguous commit is answered by
  the per-user dedupe (`duplicate: true`).
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge

from docingest.api.errors import error_response

log = logging.getLogger(__name__)

OVERLOADED_RETRY_AFTER_S = 1
DATABASE_BUSY_RETRY_AFTER_S = 2

SHED = Counter("docingest_api_shed_total", "Requests refused with 429/503 to shed load", ["reason"])
INFLIGHT = Gauge(
    "docingest_api_inflight_requests", "Requests being served (health and metrics excluded)"
)


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
