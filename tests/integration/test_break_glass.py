"""Emergency access (45 CFR 164.312(a)(2)(ii)): `docingest break-glass grant` needs a reason,
its token reads another user's document and jobs only while the grant is active in the
database, every such read is audited and counted, and the token can never write."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from prometheus_client import REGISTRY

from docingest.bootstrap import Runtime
from docingest.security.bearer_tokens import mint_break_glass_token
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, run_cli, stack_env
from tests.helpers import auth, counts, make_runtime
from tests.integration.test_audit import events_after, last_event_id

PDF = EXAMPLES / "sbc_aetna_silver_2025.pdf"
REASON = "incident-7731 member-ophelia-brackenridge"  # made up; must stay in the grant row


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    """The API with the secret the CLI signs break-glass tokens with."""
    return make_runtime(dsn, tmp_path / "home", DOCINGEST_JWT_SECRET=JWT_SECRET)


def reads_count() -> float:
    return REGISTRY.get_sample_value("docingest_break_glass_reads_total") or 0.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant_rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT grant_id, operator_id, reason FROM docingest.break_glass_grants"
        ).fetchall()


async def upload_as(client: httpx.AsyncClient, rt: Runtime, user: uuid.UUID) -> dict[str, str]:
    files = {"file": ("a.pdf", PDF.read_bytes(), "application/pdf")}
    up = await client.post("/v1/documents", files=files, headers=auth(rt, user))
    assert up.status_code == 202, up.text
    body: dict[str, str] = up.json()
    return body


def test_a_grant_needs_a_reason(dsn: str, tmp_path: Path) -> None:
    env = stack_env(dsn, tmp_path / "home")
    operator = str(uuid.uuid4())
    for reason in ([], ["--reason", "   "]):
        done = run_cli(env, "break-glass", "grant", "--operator", operator, *reason)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
    assert grant_rows(dsn) == []


async def test_grant_reads_any_users_records_audited_until_revoked(
    client: httpx.AsyncClient, rt: Runtime, dsn: str, tmp_path: Path
) -> None:
    alice = uuid.uuid4()
    up = await upload_as(client, rt, alice)
    doc_id, job_id = up["document_id"], up["job_id"]
    env = stack_env(dsn, tmp_path / "home")
    operator = uuid.uuid4()
    before_grant = last_event_id(dsn)
    granted = run_cli(env, "break-glass", "grant", "--operator", str(operator), "--reason", REASON)
    assert granted.returncode == 0, granted.stderr
    token = granted.stdout.strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert (claims["sub"], claims["role"]) == (str(operator), "break_glass")
    grant_id = claims["grant"]
    assert grant_rows(dsn) == [(uuid.UUID(grant_id), operator, REASON)]
    [ev] = events_after(dsn, before_grant)
    assert (ev["actor"], ev["action"]) == ("ops:cli", "break_glass.granted")
    assert ev["detail"]["grant_id"] == grant_id and "ophelia" not in ev["detail_text"]
    assert "ophelia" not in granted.stdout + granted.stderr

    h = bearer(token)
    reads_before, before_reads = reads_count(), last_event_id(dsn)
    for url in (f"/v1/documents/{doc_id}", f"/v1/jobs/{job_id}", f"/jobs/{doc_id}"):
        r = await client.get(url, headers=h)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["job_id"] == job_id
    read_events = events_after(dsn, before_reads)
    assert [e["action"] for e in read_events] == ["break_glass.read"] * 3
    assert {e["actor"] for e in read_events} == {f"break_glass:{operator}"}
    assert {e["detail"]["grant_id"] for e in read_events} == {grant_id}
    assert {str(e["document_id"]) for e in read_events} == {doc_id}
    assert reads_count() == reads_before + 3

    rows = counts(dsn)
    files = {"file": ("b.pdf", PDF.read_bytes(), "application/pdf")}
    for method, url, kw in (
        ("POST", "/v1/documents", {"files": files}),
        ("DELETE", f"/v1/documents/{doc_id}", {}),
        ("POST", f"/v1/jobs/{job_id}/retry", {}),
        ("POST", f"/jobs/{doc_id}/retry", {}),
        ("GET", "/v1/documents", {}),
    ):
        r = await client.request(method, url, headers=h, **kw)
        assert r.status_code == 403, (method, url, r.status_code)
    assert counts(dsn) == rows
    assert reads_count() == reads_before + 3

    revoked = run_cli(env, "break-glass", "revoke", grant_id)
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.get(f"/v1/documents/{doc_id}", headers=h)).status_code == 401
    assert run_cli(env, "break-glass", "revoke", grant_id).returncode == 1
    assert (await client.get(f"/v1/documents/{doc_id}", headers=auth(rt, alice))).status_code == 200


async def test_expired_forged_and_borrowed_grants_are_refused(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    up = await upload_as(client, rt, uuid.uuid4())
    operator, expired = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO docingest.break_glass_grants (grant_id, operator_id, reason, created_at,"
            " expires_at) VALUES (%s, %s, 'drill', now() - interval '2 hours',"
            " now() - interval '1 hour')",
            (expired, operator),
        )
        active = uuid.uuid4()
        conn.execute(
            "INSERT INTO docingest.break_glass_grants (grant_id, operator_id, reason, expires_at)"
            " VALUES (%s, %s, 'drill', now() + interval '1 hour')",
            (active, operator),
        )
    exp = int(time.time()) + 600  # the tokens themselves are valid: only the grants are not
    url = f"/v1/documents/{up['document_id']}"
    tokens = {
        "expired grant": mint_break_glass_token(JWT_SECRET, operator, expired, exp),
        "unknown grant": mint_break_glass_token(JWT_SECRET, operator, uuid.uuid4(), exp),
        "someone else's grant": mint_break_glass_token(JWT_SECRET, uuid.uuid4(), active, exp),
    }
    reads_before = reads_count()
    for what, token in tokens.items():
        r = await client.get(url, headers=bearer(token))
        assert r.status_code == 401, (what, r.status_code)
    assert reads_count() == reads_before
    good = mint_break_glass_token(JWT_SECRET, operator, active, exp)
    assert (await client.get(url, headers=bearer(good))).status_code == 200
