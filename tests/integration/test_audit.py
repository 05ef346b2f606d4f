"""Audit trail (45 CFR 164.312(b)): every read, search, retry, delete and refusal of a signed-in
caller writes exactly one `events` row naming the token's subject, the ids, the outcome and a
correlation id (the caller's own, namespaced to them), and never the filename, the query or the
token. Refusals of callers without a valid token are aggregated (test_anonymous_refusals.py)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from docingest.api.audit import CORRELATION_NAMESPACE
from docingest.api.auth import mint_token
from docingest.bootstrap import Runtime
from tests.conftest import EXAMPLES
from tests.helpers import auth

PDF = EXAMPLES / "sbc_aetna_silver_2025.pdf"
SECRET_NAME = "member-zebulon-quartermaine-claim.pdf"  # made up; must never reach the audit log


def events_after(dsn: str, last: int) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT event_id, actor, action, outcome, job_id, document_id, correlation_id,"
            " detail, detail::text AS detail_text FROM docingest.events WHERE event_id > %s"
            " ORDER BY event_id",
            (last,),
        ).fetchall()


def last_event_id(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT coalesce(max(event_id), 0) FROM docingest.events").fetchone()
    assert row is not None
    return int(row[0])


async def one_event(
    client: httpx.AsyncClient, dsn: str, method: str, url: str, status: int, **kw: Any
) -> dict[str, Any]:
    """Call the API once; exactly one audit event must follow."""
    before = last_event_id(dsn)
    r = await client.request(method, url, **kw)
    assert r.status_code == status, (url, r.status_code, r.text)
    new = events_after(dsn, before)
    assert len(new) == 1, (url, [e["action"] for e in new])
    return new[0]


async def test_each_endpoint_records_one_event_for_the_token_subject(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    alice = uuid.uuid4()
    h = auth(rt, alice)
    files = {"file": (SECRET_NAME, PDF.read_bytes(), "application/pdf")}
    up = await client.post("/v1/documents", files=files, headers=h)
    assert up.status_code == 202
    doc_id, job_id = uuid.UUID(up.json()["document_id"]), uuid.UUID(up.json()["job_id"])
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT correlation_id FROM docingest.upload_jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    doc_correlation = row[0]
    actor = f"user:{alice}"
    sent_correlation = uuid.uuid4()
    hc = {**h, "X-Correlation-Id": str(sent_correlation)}
    # the caller's id, namespaced to the caller: nobody can file events under another's id
    request_correlation = uuid.uuid5(CORRELATION_NAMESPACE, f"{alice}:{sent_correlation}")

    reads = {
        f"/v1/documents/{doc_id}": "document.read",
        f"/v1/jobs/{job_id}": "job.read",
        f"/jobs/{doc_id}": "job.read",
    }
    for url, action in reads.items():
        ev = await one_event(client, dsn, "GET", url, 200, headers=h)
        assert (ev["actor"], ev["action"], ev["outcome"]) == (actor, action, "ok"), url
        assert (ev["job_id"], ev["document_id"]) == (job_id, doc_id), url
        assert ev["correlation_id"] == doc_correlation, url

    ev = await one_event(client, dsn, "GET", "/v1/documents", 200, headers=hc)
    assert (ev["actor"], ev["action"], ev["outcome"]) == (actor, "document.list", "ok")
    assert ev["correlation_id"] == request_correlation and ev["detail"]["returned"] == 1

    query = "deductible for zebulon quartermaine"
    ev = await one_event(
        client, dsn, "POST", "/v1/search", 200, headers=hc, json={"query": query, "k": 3}
    )
    assert (ev["actor"], ev["action"], ev["correlation_id"]) == (
        actor,
        "search",
        request_correlation,
    )
    assert "zebulon" not in ev["detail_text"]

    ev = await one_event(client, dsn, "POST", f"/v1/jobs/{job_id}/retry", 409, headers=h)
    assert (ev["actor"], ev["action"], ev["outcome"]) == (actor, "job.retry", "refused")
    assert ev["correlation_id"] == doc_correlation

    ev = await one_event(client, dsn, "DELETE", f"/v1/documents/{doc_id}", 204, headers=h)
    assert (ev["actor"], ev["action"], ev["document_id"]) == (actor, "document.delete", doc_id)
    assert ev["correlation_id"] == doc_correlation

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT actor, action, detail::text FROM docingest.events").fetchall()
    assert rows and not any("zebulon" in " ".join(map(str, r)).lower() for r in rows)


async def test_refusals_are_recorded_without_the_token(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    alice, mallory = uuid.uuid4(), uuid.uuid4()
    files = {"file": (PDF.name, PDF.read_bytes(), "application/pdf")}
    up = await client.post("/v1/documents", files=files, headers=auth(rt, alice))
    doc_id, job_id = up.json()["document_id"], up.json()["job_id"]

    # without a valid token: counted per address and minute, not one row each
    before = last_event_id(dsn)
    assert (await client.get("/v1/documents")).status_code == 401
    forged = mint_token("another-key-" + "x" * 40, alice)
    bad = {"Authorization": f"Bearer {forged}"}
    assert (await client.get(f"/v1/jobs/{job_id}", headers=bad)).status_code == 401
    assert events_after(dsn, before) == []

    probes = [
        ("GET", f"/v1/documents/{doc_id}"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/jobs/{doc_id}"),
        ("POST", f"/v1/jobs/{job_id}/retry"),
        ("DELETE", f"/v1/documents/{doc_id}"),
    ]
    for method, url in probes:
        ev = await one_event(client, dsn, method, url, 404, headers=auth(rt, mallory))
        assert (ev["actor"], ev["action"], ev["outcome"]) == (
            f"user:{mallory}",
            "auth.refused",
            "not_found",
        ), url
        assert ev["document_id"] is None and ev["job_id"] is None  # no ids of others' documents

    ev = await one_event(
        client, dsn, "POST", f"/jobs/{doc_id}/advance", 403, headers=auth(rt, mallory)
    )
    assert (ev["actor"], ev["outcome"], ev["detail"]["status"]) == (
        f"user:{mallory}",
        "forbidden",
        403,
    )
