"""Liveness, readiness and Prometheus metrics. None needs a login, none is refused by the
admission lanes, and the database reads behind readiness and the queue gauges happen at most
once a second (api/recent.py), however often they are asked.

`/readyz` answers 503 whenever this process cannot serve: every request slot taken
(`overloaded`), no pool connection within 2 s (`database busy`), the database not answering
(`database unreachable`), or migrations not current.
"""

from __future__ import annotations

import contextlib

import psycopg
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from docingest.api import queue_metrics
from docingest.api.deps import StateDep
from docingest.api.schemas import Health, Ready, Unavailable
from docingest.api.state import AppState
from docingest.store import migrate, queue_stats

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _database_check(state: AppState) -> tuple[int, str | None]:
    """(schema version, why the database cannot serve or None)."""
    try:
        async with state.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) AS v FROM docingest.schema_migrations"
            )
            row = await cur.fetchone()
    except PoolTimeout:
        return 0, "database busy"
    except (psycopg.Error, OSError):
        # the server gone, refusing, or failing the query; anything else is a bug of ours
        # and answers 500 instead of passing for an outage
        return 0, "database unreachable"
    return (int(row["v"]) if row else 0), None


@router.get("/readyz", response_model=Ready, responses={503: {"model": Unavailable}})
async def readyz(state: StateDep) -> JSONResponse:
    if state.lanes.saturated:
        return _unavailable("overloaded")
    version, problem = await state.readiness.get(lambda: _database_check(state))
    if problem is not None:
        return _unavailable(problem)
    head = migrate.head()
    if version != head:
        return _unavailable("migrations not current", schema=version, head=head)
    return JSONResponse({"status": "ready", "schema": version})


def _unavailable(reason: str, **extra: int) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason, **extra}, status_code=503)


async def _queue_gauges(state: AppState) -> bytes:
    with contextlib.suppress(psycopg.Error):  # PoolTimeout is one too
        async with state.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            return queue_metrics.render(await queue_stats.snapshot(conn))
    return b""


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    """Process metrics plus queue gauges read from the database. When the database cannot
    answer, the queue gauges are left out (their absence is alertable) and the rest is served."""
    body = generate_latest() + await state.queue_gauges.get(lambda: _queue_gauges(state))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
