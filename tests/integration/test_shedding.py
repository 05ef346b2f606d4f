"""Load shedding (api/shedding.py): over the in-flight cap or without a database connection,
the API answers 503 + Retry-After (never 500) and a refused upload leaves no document, so the
client can retry it safely."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from docingest.api.main import create_app
from docingest.config import ConfigError, Settings
from tests.conftest import EXAMPLES
from tests.helpers import auth, counts, make_runtime, serving
from tests.metrics_scrape import sample

PDF = EXAMPLES / "sbc_uhc_bronze_2026.pdf"
BOUNDARY = "shedding-test-boundary"
DEADLINE_S = 15.0


def multipart(pdf: bytes) -> tuple[bytes, bytes]:
    """The multipart body of one `file` part, split around the PDF bytes' first half."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    half = len(pdf) // 2
    return head + pdf[:half], pdf[half:] + f"\r\n--{BOUNDARY}--\r\n".encode()


async def scrape(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return sample(response.text, name, **labels) or 0.0


def assert_shed(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == code
    assert int(response.headers["retry-after"]) >= 1


async def test_over_the_inflight_cap_requests_are_shed_and_health_is_not(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path / "home", DOCINGEST_API_MAX_INFLIGHT="1")
    user = uuid.uuid4()
    headers = {**auth(rt, user), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    first, rest = multipart(PDF.read_bytes())
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield first
        await release.wait()  # the upload stays in flight until the test lets it finish
        yield rest

    async with serving(create_app(rt, pool_size=4)) as url, httpx.AsyncClient(base_url=url) as c:
        shed_before = await scrape(c, "docingest_api_shed_total", reason="overloaded")
        held = asyncio.create_task(c.post("/v1/documents", content=slow_body(), headers=headers))
        deadline = time.monotonic() + DEADLINE_S
        while await scrape(c, "docingest_api_inflight_requests") < 1:
            assert not held.done(), held.result().text
            assert time.monotonic() < deadline, "the held upload never became in flight"
            await asyncio.sleep(0.02)

        assert_shed(await c.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth(rt, user)), "overloaded")
        other = multipart(b"%PDF-1.4 another document")
        assert_shed(
            await c.post("/v1/documents", content=b"".join(other), headers=headers), "overloaded"
        )
        assert (await c.get("/healthz")).status_code == 200  # alive ...
        ready = await c.get("/readyz")  # ... but not ready: every slot is taken
        assert (ready.status_code, ready.json()["reason"]) == (503, "overloaded")
        assert await scrape(c, "docingest_api_shed_total", reason="overloaded") == shed_before + 2

        release.set()
        accepted = await asyncio.wait_for(held, DEADLINE_S)
        assert accepted.status_code == 202, accepted.text
        job = await c.get(f"/v1/jobs/{accepted.json()['job_id']}", headers=auth(rt, user))
        assert job.status_code == 200  # the slot is free again
        assert (await c.get("/readyz")).status_code == 200
        assert await scrape(c, "docingest_api_inflight_requests") == 0
    assert counts(dsn)["documents"] == 1  # the shed upload created nothing


async def test_without_a_free_database_connection_requests_get_database_busy(
    dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path / "home")
    user = uuid.uuid4()
    files = {"file": ("a.pdf", PDF.read_bytes(), "application/pdf")}
    app = create_app(rt, pool_size=1, pool_timeout_s=0.3)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            shed_before = await scrape(c, "docingest_api_shed_total", reason="database_busy")
            async with app.state.docingest.pool.connection():  # the pool's only connection
                assert_shed(
                    await c.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth(rt, user)),
                    "database_busy",
                )
                assert_shed(
                    await c.post("/v1/documents", files=files, headers=auth(rt, user)),
                    "database_busy",
                )
                assert (await c.get("/healthz")).status_code == 200
            after = await scrape(c, "docingest_api_shed_total", reason="database_busy")
            assert after == shed_before + 2
            assert counts(dsn)["documents"] == 0  # nothing half-written: the retry is safe
            retried = await c.post("/v1/documents", files=files, headers=auth(rt, user))
            assert retried.status_code == 202 and retried.json()["duplicate"] is False


@pytest.mark.parametrize("raw", ["0", "-3", "many"])
def test_max_inflight_must_be_a_positive_integer(raw: str) -> None:
    with pytest.raises(ConfigError, match="DOCINGEST_API_MAX_INFLIGHT"):
        Settings.from_env({"DOCINGEST_API_MAX_INFLIGHT": raw})
