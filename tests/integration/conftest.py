"""The API in-process for integration tests: a runtime on the test database and an HTTP client
on the real app (lifespan run, so the pool exists). A module that needs other settings
overrides `rt`. After every test that used the client, no blob may be left that no row
references (issue 11: no blob outlives its document)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from docingest.api.main import create_app
from docingest.bootstrap import Runtime
from docingest.ops.orphans import find_orphans
from tests.helpers import make_runtime


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    return make_runtime(dsn, tmp_path / "home")


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rt, pool_size=4)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
        async with app.state.docingest.pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('docingest.documents') AS t")
            schema = await cur.fetchone()  # a test may drop the schema on purpose
            if schema is not None and schema["t"] is not None:
                orphans = await find_orphans(conn, rt.blobs, grace=timedelta(0))
                assert orphans == [], "blobs no row references"
