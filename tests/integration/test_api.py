"""The HTTP API in-process (real app, real Postgres, real blob store): auth, scoping, upload
rules, job reads, retry/advance, search, delete, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest

from docingest.bootstrap import Runtime
from docingest.store import migrate
from docingest.worker.runner import run_worker
from tests.conftest import CORPUS, EXAMPLES
from tests.helpers import auth, make_runtime

GLOSSARY = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
UHC = EXAMPLES / "sbc_uhc_bronze_2026.pdf"
AETNA = EXAMPLES / "sbc_aetna_silver_2025.pdf"


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    return make_runtime(dsn, tmp_path / "home", DOCINGEST_MAX_UPLOAD_BYTES=str(300_000))


def pdf_file(path: Path, name: str | None = None) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name or path.name, path.read_bytes(), "application/pdf")}


def blob_files(rt: Runtime) -> set[Path]:
    root = rt.settings.home / "blobs"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def test_bad_tokens_are_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    user = str(uuid.uuid4())
    now = int(time.time())
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(
        b"="
    )
    payload = base64.urlsafe_b64encode(json.dumps({"sub": user, "exp": now + 60}).encode()).rstrip(
        b"="
    )
    tokens = {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": jwt.encode({"sub": user, "exp": now - 10}, rt.jwt_secret, algorithm="HS256"),
        "no_exp": jwt.encode({"sub": user}, rt.jwt_secret, algorithm="HS256"),
        "other_key": jwt.encode({"sub": user, "exp": now + 60}, "x" * 40, algorithm="HS256"),
        "hs384_same_key": jwt.encode(
            {"sub": user, "exp": now + 60}, rt.jwt_secret, algorithm="HS384"
        ),
        "alg_none": f"{header.decode()}.{payload.decode()}.",
        "sub_not_uuid": jwt.encode(
            {"sub": "alice", "exp": now + 60}, rt.jwt_secret, algorithm="HS256"
        ),
    }
    for name, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await client.get("/v1/documents", headers=headers)
        assert r.status_code == 401, name
        assert r.json()["error"]["code"] == "unauthorized"
        assert token is None or token not in r.text


async def test_upload_rules(client: httpx.AsyncClient, rt: Runtime, tmp_path: Path) -> None:
    h = auth(rt, uuid.uuid4())
    r = await client.post("/v1/documents", headers=h, files=pdf_file(GLOSSARY))
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "uploaded" and body["duplicate"] is False
    again = await client.post("/v1/documents", headers=h, files=pdf_file(GLOSSARY, "renamed.pdf"))
    assert again.status_code == 202
    assert again.json() == {**body, "duplicate": True}
    blobs_before = blob_files(rt)

    not_pdf = await client.post(
        "/v1/documents", headers=h, files={"file": ("a.pdf", b"oops\n", "application/pdf")}
    )
    assert (not_pdf.status_code, not_pdf.json()["error"]["code"]) == (415, "not_pdf")
    empty = await client.post(
        "/v1/documents", headers=h, files={"file": ("a.pdf", b"", "application/pdf")}
    )
    assert (empty.status_code, empty.json()["error"]["code"]) == (415, "empty_file")
    big = await client.post(
        "/v1/documents", headers=h, files=pdf_file(AETNA)
    )  # 519 KB > 300 KB cap
    assert (big.status_code, big.json()["error"]["code"]) == (413, "too_large")
    no_field = await client.post(
        "/v1/documents", headers=h, files={"other": ("a.pdf", b"%PDF-1.4", "application/pdf")}
    )
    assert (no_field.status_code, no_field.json()["error"]["code"]) == (422, "malformed_request")
    not_multipart = await client.post("/v1/documents", headers=h, content=b"%PDF-1.4")
    assert not_multipart.status_code == 422
    assert blob_files(rt) == blobs_before  # refused uploads leave nothing behind

    junk = CORPUS / "hostile" / "leading_junk_before_header.pdf"
    if junk.exists():
        r = await client.post("/v1/documents", headers=h, files=pdf_file(junk))
        assert r.status_code == 202, r.text
    late = b"x" * 1020 + b"%PDF-1.4\n"  # header starts inside the first 1,024 bytes
    assert (
        await client.post(
            "/v1/documents", headers=h, files={"file": ("l.pdf", late, "application/pdf")}
        )
    ).status_code == 202
    too_late = b"x" * 1025 + b"%PDF-1.4\n"
    r = await client.post(
        "/v1/documents", headers=h, files={"file": ("l.pdf", too_late, "application/pdf")}
    )
    assert r.status_code == 415


async def test_users_only_see_their_own(client: httpx.AsyncClient, rt: Runtime) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    up = (await client.post("/v1/documents", headers=auth(rt, alice), files=pdf_file(UHC))).json()
    doc, job = up["document_id"], up["job_id"]
    for path in (f"/v1/jobs/{job}", f"/jobs/{doc}", f"/v1/documents/{doc}"):
        assert (await client.get(path, headers=auth(rt, alice))).status_code == 200, path
        r = await client.get(path, headers=auth(rt, bob))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    assert (await client.delete(f"/v1/documents/{doc}", headers=auth(rt, bob))).status_code == 404
    assert (await client.post(f"/v1/jobs/{job}/retry", headers=auth(rt, bob))).status_code == 404
    assert (await client.get("/v1/jobs/not-a-uuid", headers=auth(rt, alice))).status_code == 404
    listing = (await client.get("/v1/documents", headers=auth(rt, bob))).json()
    assert listing["documents"] == [] and listing["total"] == 0
    listing = (await client.get("/v1/documents?limit=1", headers=auth(rt, alice))).json()
    assert listing["total"] == 1 and listing["documents"][0]["document_id"] == doc


async def test_job_body_search_retry_advance_delete(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    up = (
        await client.post("/v1/documents", headers=auth(rt, alice), files=pdf_file(GLOSSARY))
    ).json()
    await client.post("/v1/documents", headers=auth(rt, bob), files=pdf_file(UHC))
    await run_worker(rt, once=True, handle_signals=False)
    job = (await client.get(f"/v1/jobs/{up['job_id']}", headers=auth(rt, alice))).json()
    assert set(job) == {
        "job_id",
        "document_id",
        "status",
        "progress",
        "retry_count",
        "last_error",
        "created_at",
        "updated_at",
    }
    assert job["status"] == "complete" and job["last_error"] is None
    p = job["progress"]
    assert (
        p["percent"] == 100
        and p["chunks_total"] == p["chunks_done"] == p["embeds_total"] == p["embeds_done"] > 0
    )

    found = (
        await client.post(
            "/v1/search", headers=auth(rt, alice), json={"query": "coinsurance", "k": 3}
        )
    ).json()
    assert 0 < len(found["results"]) <= 3
    assert {r["document_id"] for r in found["results"]} == {up["document_id"]}
    assert set(found["results"][0]) == {
        *("document_id", "chunk_id", "chunk_ord", "text", "score"),  # the original contract
        *("filename", "pages", "heading_path", "document_kind"),  # where to cite it
    }
    bad = await client.post("/v1/search", headers=auth(rt, alice), json={"query": "", "k": 3})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "malformed_request"

    retry = await client.post(f"/v1/jobs/{up['job_id']}/retry", headers=auth(rt, alice))
    assert retry.status_code == 409
    assert (
        await client.post(f"/jobs/{up['document_id']}/advance", headers=auth(rt, alice))
    ).status_code == 403
    adv = await client.post(
        f"/jobs/{up['document_id']}/advance", headers=auth(rt, uuid.uuid4(), admin=True)
    )
    assert adv.status_code == 200 and adv.json()["status"] == "complete"

    blobs_before = blob_files(rt)
    assert (
        await client.delete(f"/v1/documents/{up['document_id']}", headers=auth(rt, alice))
    ).status_code == 204
    assert (
        await client.get(f"/v1/documents/{up['document_id']}", headers=auth(rt, alice))
    ).status_code == 404
    assert len(blob_files(rt)) == len(blobs_before) - 2  # raw + parsed
    with psycopg.connect(dsn) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM docingest.document_chunks WHERE document_id = %(d)s)"
            " + (SELECT count(*) FROM docingest.upload_jobs WHERE document_id = %(d)s)",
            {"d": up["document_id"]},
        ).fetchone()
        audit = conn.execute(
            "SELECT count(*) FROM docingest.events WHERE document_id = %s AND action = 'document.delete'",
            (up["document_id"],),
        ).fetchone()
    assert left == (0,) and audit == (1,)
    gone = (
        await client.post(
            "/v1/search", headers=auth(rt, alice), json={"query": "coinsurance", "k": 3}
        )
    ).json()
    assert gone["results"] == []


async def test_failed_job_retry_resumes(client: httpx.AsyncClient, rt: Runtime) -> None:
    encrypted = CORPUS / "hostile" / "encrypted_aes256_r6_userpw.pdf"
    if not encrypted.exists():
        pytest.skip("corpus not available")
    h = auth(rt, uuid.uuid4())
    up = (await client.post("/v1/documents", headers=h, files=pdf_file(encrypted))).json()
    await run_worker(rt, once=True, handle_signals=False)
    job = (await client.get(f"/jobs/{up['document_id']}", headers=h)).json()
    assert job["status"] == "failed_parse"
    assert job["last_error"]["code"] == "encrypted" and "password" in job["last_error"]["message"]
    r = await client.post(f"/jobs/{up['document_id']}/retry", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "parse_queued"
    await run_worker(rt, once=True, handle_signals=False)
    job = (await client.get(f"/v1/jobs/{up['job_id']}", headers=h)).json()
    assert job["status"] == "failed_parse"


async def test_health_readiness_and_metrics(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["schema"] == migrate.head()
    await client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth(rt, uuid.uuid4()))
    metrics = (await client.get("/metrics")).text
    assert (
        'docingest_api_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}'
        in metrics
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM docingest.schema_migrations")
    # readiness reads the database at most once a second (api/recent.py): poll for the change
    deadline = time.monotonic() + 5
    while (not_ready := await client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "readiness never noticed the migrations"
        await asyncio.sleep(0.1)
    assert not_ready.status_code == 503 and not_ready.json()["reason"] == "migrations not current"
