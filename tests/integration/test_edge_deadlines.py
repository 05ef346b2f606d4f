"""The HTTP edge over real sockets (uvicorn with docingest's protocol, api/server.py): a
stalled upload holds no database connection and is cut off with 408; headers that never
finish close the connection; one user's floods hit only that user's lane; a multipart body
without its closing boundary is refused; a NUL in a filename is dropped, not a 500."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from docingest.api.main import create_app
from docingest.api.server import protocol_for
from docingest.bootstrap import Runtime
from docingest.testing.pdfgen import make_pdf
from tests.helpers import auth, counts, make_runtime, serving

BOUNDARY = "edge-boundary"


def runtime(dsn: str, tmp_path: Path) -> Runtime:
    """Short deadlines so the test waits seconds (the hostile suite runs the defaults)."""
    return make_runtime(
        dsn,
        tmp_path / "home",
        DOCINGEST_API_BODY_TIMEOUT_SECONDS="1",
        DOCINGEST_API_HEADER_TIMEOUT_SECONDS="1",
        DOCINGEST_API_USER_MAX_INFLIGHT="2",
    )


def head(rt: Runtime, user: uuid.UUID, length: int) -> bytes:
    return (
        f"POST /v1/documents HTTP/1.1\r\nHost: x\r\nAuthorization: {auth(rt, user)['Authorization']}"
        f"\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="s.pdf"\r\n\r\n%PDF-1.4\n'
    ).encode()


async def read_all(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.read()  # until the server closes


async def test_stalled_uploads_hold_no_connection_and_are_cut_off(dsn: str, tmp_path: Path) -> None:
    rt = runtime(dsn, tmp_path)
    app = create_app(rt, pool_size=1)  # one connection: a held one would starve everyone
    mallory, alice = uuid.uuid4(), uuid.uuid4()
    async with serving(app, protocol_for(rt.settings.edge)) as url:
        port = int(url.rsplit(":", 1)[1])
        stalled = []
        for _ in range(2):  # mallory's whole lane
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head(rt, mallory, 100_000))
            await writer.drain()
            stalled.append((reader, writer))
        async with httpx.AsyncClient(base_url=url) as c:
            started = time.monotonic()
            while app.state.docingest.lanes.inflight < 2:  # both uploads are being served
                assert time.monotonic() - started < 5
                await asyncio.sleep(0.02)
            third = await c.post(
                "/v1/documents", content=b"x", headers={**auth(rt, mallory), "Content-Type": "x"}
            )
            assert (third.status_code, third.json()["error"]["code"]) == (429, "too_many_requests")
            read = await c.get("/v1/documents", headers=auth(rt, alice))  # the pool is free
            assert read.status_code == 200, read.text
        for reader, writer in stalled:
            answer = await read_all(reader, timeout_s=10)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            assert b"request_timeout" in answer
            writer.close()
    assert counts(dsn)["documents"] == 0
    assert [p for p in (rt.settings.home / "blobs").rglob("*") if p.is_file()] == []


async def test_unfinished_headers_close_the_connection(dsn: str, tmp_path: Path) -> None:
    rt = runtime(dsn, tmp_path)
    async with serving(create_app(rt, pool_size=1), protocol_for(rt.settings.edge)) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Pad: a")
        started = time.monotonic()
        assert await read_all(reader, timeout_s=10) == b""  # closed by the server, no answer
        assert time.monotonic() - started < 5
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: quick\r\nConnection: close\r\n\r\n")
        assert (await read_all(reader, timeout_s=10)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_truncated_multipart_is_refused_and_nul_filenames_are_cleaned(
    dsn: str, tmp_path: Path
) -> None:
    rt = runtime(dsn, tmp_path)
    pdf = make_pdf(4, pages=1)
    user = uuid.uuid4()
    headers = {**auth(rt, user), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.pdf"'
        "\r\nContent-Type: application/pdf\r\n\r\n"
    ).encode() + pdf

    async def body(closing: bytes) -> AsyncIterator[bytes]:
        yield part
        yield closing

    async with serving(create_app(rt, pool_size=2)) as url, httpx.AsyncClient(base_url=url) as c:
        cut = await c.post("/v1/documents", content=body(b""), headers=headers)
        assert (cut.status_code, cut.json()["error"]["code"]) == (422, "malformed_request")
        assert counts(dsn)["documents"] == 0
        whole = await c.post(
            "/v1/documents", content=body(f"\r\n--{BOUNDARY}--\r\n".encode()), headers=headers
        )
        assert whole.status_code == 202, whole.text
        doc = await c.get(f"/v1/documents/{whole.json()['document_id']}", headers=auth(rt, user))
        assert doc.json()["filename"] == "ab.pdf"


def _refused_callbacks(base: str, n: int) -> tuple[dict[str, int], set[str | None]]:
    """`n` unsigned signed-callback POSTs on one kept-alive client: each is refused on its
    headers, before its body is read."""
    outcomes: dict[str, int] = {}
    connection: set[str | None] = set()
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(n):
            try:
                r = http.post(
                    "/webhooks/llamaparse",
                    content=b'{"markdown": "' + b"x" * 300 + b'"}',
                    headers={"content-type": "application/json"},
                )
                key = str(r.status_code)
                connection.add(r.headers.get("connection"))
            except httpx.HTTPError as exc:  # the server closed a connection it had not said so
                key = type(exc).__name__
            outcomes[key] = outcomes.get(key, 0) + 1
        connection.add(http.get("/healthz").headers.get("connection"))
    return outcomes, connection


@pytest.mark.parametrize(
    ("rate", "burst", "refused_with"),
    [("10000", "10000", "401"), ("1", "2", "429")],  # by the route; by the admission lanes
)
async def test_answers_before_the_body_say_the_connection_closes(
    dsn: str, tmp_path: Path, rate: str, burst: str, refused_with: str
) -> None:
    """The server closes a connection whose request was answered with its body unread. Its
    answer must say so, whichever layer answered, or the client sends its next request on it
    and gets no answer (25 of 300 such requests failed with ReadError / RemoteProtocolError
    before the header was set)."""
    rt = make_runtime(
        dsn,
        tmp_path / "home",
        DOCINGEST_API_ANON_RATE_PER_SECOND=rate,
        DOCINGEST_API_ANON_BURST=burst,
    )
    async with serving(create_app(rt, pool_size=4), http=protocol_for(rt.settings.edge)) as base:
        outcomes, connection = await asyncio.to_thread(_refused_callbacks, base, 150)
    assert set(outcomes) <= {"401", "429"} and sum(outcomes.values()) == 150, outcomes
    assert outcomes.get(refused_with, 0) >= 100, outcomes
    assert connection == {"close", None}  # refused ones close; a GET without a body does not
