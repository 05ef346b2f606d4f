"""`/admin/dashboard`: the operator's page (admin role only; each view is audited).
Counts, error codes and service names only: never document text, filenames or user ids."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from docingest.api import audit, dashboard_page
from docingest.api.deps import AdminDep, ConnDep
from docingest.store import dashboard_stats, events, queue_stats

router = APIRouter(tags=["admin"])


@router.get("/admin/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request, admin: AdminDep, conn: ConnDep) -> HTMLResponse:
    snap = await queue_stats.snapshot(conn)
    stats = await dashboard_stats.read(conn)
    await events.record(
        conn,
        actor=admin.actor,
        action="dashboard.read",
        correlation_id=audit.correlation_id(request),
    )
    return HTMLResponse(
        dashboard_page.render(snap, stats),
        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
    )


# inline styles only: no scripts, no external fetches, no framing
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
