"""Fuzzing the HTTP edge (issue 11): multipart uploads, JSON bodies and query parameters that
hypothesis makes up, sent over real HTTP to the real app under uvicorn, never answer 5xx, and
every error is in the shape `{"error": {"code", "message"}}`. Afterwards no blob is left that
no row references."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docingest.api.main import create_app
from docingest.api.server import protocol_for
from docingest.bootstrap import Runtime
from docingest.ops.orphans import find_orphans
from docingest.store.db import open_pool
from docingest.testing.pdfgen import make_pdf
from docingest.testing.procs import free_port, wait_http_ok
from tests.helpers import auth, make_runtime

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    # a generous anonymous budget: the fuzzer is one address sending as fast as it can
    return make_runtime(
        dsn,
        tmp_path / "home",
        DOCINGEST_MAX_UPLOAD_BYTES="200000",
        DOCINGEST_API_ANON_RATE_PER_SECOND="10000",
        DOCINGEST_API_ANON_BURST="10000",
    )


@pytest.fixture
def api(rt: Runtime) -> Iterator[httpx.Client]:
    """The app under uvicorn in a thread of its own, with the API's own HTTP protocol (the
    guarded h11 of `docingest api`; uvicorn's default would parse with httptools)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt, pool_size=4),
            host="127.0.0.1",
            port=port,
            log_level="error",
            http=protocol_for(rt.settings.edge),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/readyz", 30)
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:200])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body


@FUZZ
@given(
    boundary=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=70),
    filename=st.text(max_size=40),
    field=st.sampled_from(["file", "other", ""]),
    payload=st.binary(max_size=300) | st.just(make_pdf(5, pages=1)),
    cut=st.integers(min_value=0, max_value=400) | st.none(),
    noise=st.binary(max_size=40),
)
def test_multipart_uploads(
    api: httpx.Client,
    rt: Runtime,
    boundary: str,
    filename: str,
    field: str,
    payload: bytes,
    cut: int | None,
    noise: bytes,
) -> None:
    name = json.dumps(filename)[1:-1]
    body = (
        noise
        + f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"'
        "\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    body = body[:cut] if cut is not None else body
    headers = {
        **auth(rt, uuid.uuid4()),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    check(api.post("/v1/documents", content=body, headers=headers))


@FUZZ
@given(body=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_json_bodies(api: httpx.Client, rt: Runtime, body: bytes) -> None:
    headers = {**auth(rt, uuid.uuid4()), "Content-Type": "application/json"}
    check(api.post("/v1/search", content=body, headers=headers))
    signed = {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
    check(api.post("/webhooks/llamaparse", content=body, headers=signed))
    check(api.post(f"/v1/jobs/{uuid.uuid4()}/retry", content=body, headers=headers))


PARAM = st.text(max_size=30) | st.integers().map(str) | st.just("1" + "0" * 30)


@FUZZ
@given(
    limit=PARAM,
    offset=PARAM,
    ident=st.text(max_size=40).map(lambda s: quote(s, safe="")),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "FROB"]),
    token=st.text(max_size=20),
)
def test_query_parameters_and_paths(
    api: httpx.Client, rt: Runtime, limit: str, offset: str, ident: str, method: str, token: str
) -> None:
    h = auth(rt, uuid.uuid4())
    check(api.get("/v1/documents", params={"limit": limit, "offset": offset}, headers=h))
    for path in (f"/v1/documents/{ident}", f"/v1/jobs/{ident}", f"/jobs/{ident}"):
        check(api.request(method, path, headers=h))
    check(api.post(f"/webhooks/llamaparse/{ident}", params={"token": token}))


async def test_no_orphan_blob_after_fuzzing(api: httpx.Client, rt: Runtime, dsn: str) -> None:
    """The truncated, duplicated and refused uploads above left nothing behind."""
    pdf = make_pdf(9, pages=1)
    h = {**auth(rt, uuid.uuid4())}
    for cut in (None, len(pdf) // 2):
        body = pdf if cut is None else pdf[:cut]
        files = {"file": ("a\x00b.pdf", body, "application/pdf")}
        await asyncio.to_thread(
            lambda f=files: check(api.post("/v1/documents", files=f, headers=h))
        )
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            assert await find_orphans(conn, rt.blobs, grace=timedelta(0)) == []
    finally:
        await pool.close()
