"""Liveness, readiness (database reachable and migrations current) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from docingest.api.deps import StateDep
from docingest.store import migrate

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
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
