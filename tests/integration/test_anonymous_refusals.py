"""Requests without a valid token are counted, not written one audit row each (issue 11):
300 of them leave no row until their minute is over, then one `auth.refused.anonymous` row per
source address and minute carries the count; the metric counts every one. And whatever method
names a client invents, `/metrics` keeps its size (closed label sets)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from docingest.api.main import create_app
from docingest.api.refusals import ACTION, RefusalLog
from docingest.bootstrap import Runtime
from tests.metrics_scrape import local


def anonymous_rows(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT actor, action, outcome, detail FROM docingest.events WHERE action = %s",
            (ACTION,),
        ).fetchall()


async def test_anonymous_refusals_are_one_row_per_address_and_minute(rt: Runtime, dsn: str) -> None:
    app = create_app(rt, pool_size=2)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4242))
        before = local("docingest_api_anonymous_refusals_total", status="401", code="unauthorized")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for i in range(300):
                headers = {"Authorization": "Bearer forged"} if i % 2 else {}
                assert (await c.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers)).status_code in (
                    401,
                    429,  # the address's token bucket runs dry along the way
                )
        counted = local("docingest_api_anonymous_refusals_total", status="401", code="unauthorized")
        limited = local("docingest_api_anonymous_refusals_total", status="429", code="rate_limited")
        assert counted - before + limited >= 300
        assert anonymous_rows(dsn) == []  # nothing written per request
        state = app.state.docingest
        assert await state.refusals.flush(state.pool) == 0  # the minute is not over yet
        assert await state.refusals.flush(state.pool, everything=True) >= 1
    rows = anonymous_rows(dsn)
    assert {r["detail"]["address"] for r in rows} == {"203.0.113.7"}
    assert sum(r["detail"]["count"] for r in rows) == 300
    assert all((r["actor"], r["outcome"]) == ("anonymous", "aggregated") for r in rows)
    assert len(rows) <= 2  # the requests may straddle one minute boundary, never more


def test_minutes_close_and_sources_are_bounded() -> None:
    log = RefusalLog(max_sources=2)
    t = 1_000_020.0  # 20 s into a minute
    for address in ("a", "b", "c", "d"):
        log.note(address, 401, "unauthorized", now=t)
    log.note("a", 429, "rate_limited", now=t + 60)
    assert log.take(now=t + 1) == []  # that minute is still open
    closed = log.take(now=t + 60)
    assert [(m.address, m.count) for m in closed] == [("a", 1), ("b", 1), ("other", 2)]
    rest = log.take(now=t + 60, everything=True)
    assert [(m.address, m.by) for m in rest] == [("a", {"429:rate_limited": 1})]


async def test_invented_methods_do_not_grow_metrics(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    baseline = len((await client.get("/metrics")).content)
    for i in range(300):
        r = await client.request(f"M{i:03d}X", "/v1/documents")
        assert r.status_code < 500
        assert "detail" not in r.json()  # the error shape, not FastAPI's default
    text = (await client.get("/metrics")).text
    assert "M000X" not in text and 'method="other"' in text
    assert len(text.encode()) < baseline + 8 * 1024
