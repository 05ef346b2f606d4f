"""Transmission safeguards of the API (45 CFR 164.312(e)(2)): a client-supplied
`Content-SHA256` must match the uploaded bytes, and HSTS is sent behind a TLS proxy."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx

from docingest.api.main import create_app
from docingest.bootstrap import Runtime
from tests.conftest import EXAMPLES
from tests.helpers import auth, counts, make_runtime

PDF = EXAMPLES / "sbc_aetna_silver_2025.pdf"
HSTS = "max-age=31536000; includeSubDomains"


def blob_files(rt: Runtime) -> set[Path]:
    return {p for p in (rt.settings.home / "blobs").rglob("*") if p.is_file()}


async def test_upload_with_a_wrong_checksum_stores_nothing(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    data = PDF.read_bytes()
    h = auth(rt, uuid.uuid4())
    files = {"file": ("a.pdf", data, "application/pdf")}
    rows, blobs = counts(dsn), blob_files(rt)
    wrong = hashlib.sha256(data + b"x").hexdigest()
    r = await client.post("/v1/documents", files=files, headers={**h, "Content-SHA256": wrong})
    assert r.status_code == 400 and r.json()["error"]["code"] == "checksum_mismatch", r.text
    assert counts(dsn) == rows and blob_files(rt) == blobs

    r = await client.post("/v1/documents", files=files, headers={**h, "Content-SHA256": "abc"})
    assert r.status_code == 422 and counts(dsn) == rows

    right = hashlib.sha256(data).hexdigest().upper()  # hex digits in either case
    r = await client.post("/v1/documents", files=files, headers={**h, "Content-SHA256": right})
    assert r.status_code == 202, r.text
    assert counts(dsn)["documents"] == rows["documents"] + 1
    assert len(blob_files(rt)) == len(blobs) + 1


async def test_hsts_only_when_the_public_url_is_https(
    client: httpx.AsyncClient, dsn: str, tmp_path: Path
) -> None:
    plain = await client.get("/healthz")
    assert plain.status_code == 200 and "strict-transport-security" not in plain.headers

    behind_proxy = make_runtime(dsn, tmp_path / "proxied", DOCINGEST_PUBLIC_URL="https://api.test")
    app = create_app(behind_proxy, pool_size=2)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for r in (await c.get("/healthz"), await c.get("/v1/documents")):
                assert r.headers.get("strict-transport-security") == HSTS, r.status_code
            assert r.status_code == 401  # refusals carry it too
