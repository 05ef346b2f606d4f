"""Liveness, readiness (database reachable and migrations current) and Prometheus metrics."""

from __future__ import annotations

import contextlib

import psycopg
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from docingest.api import queue_metrics
from docingest.api.deps import StateDep
from docingest.store import migrate, queue_stats

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    try:
        async with state.pool.connection(timeout=2) as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) AS v FROM docingest.schema_migrations"
            )
            row = await cur.fetchone()
    except Exception:
        return JSONResponse(
            {"status": "unavailable", "reason": "database unreachable"}, status_code=503
        )
    version, head = (int(row["v"]) if row else 0), migrate.head()
    if version != head:
        return JSONResponse(
            {
                "status": "unavailable",
                "reason": "migrations not current",
                "schema": version,
                "head": head,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "schema": version})


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    """Process metrics plus queue gauges read from the database. When the database cannot
    answer, the queue gauges are left out (their absence is alertable) and the rest is served."""
    body = generate_latest()
    with contextlib.suppress(psycopg.Error):  # PoolTimeout is one too
        async with state.pool.connection(timeout=2) as conn:
            body += queue_metrics.render(await queue_stats.snapshot(conn))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
