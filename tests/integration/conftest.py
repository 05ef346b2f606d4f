"""The API in-process for integration tests: a runtime on the test database and an HTTP client
on the real app (lifespan run, so the pool exists). A module that needs other
settings overrides `rt`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from docingest.api.main import create_app
from docingest.bootstrap import Runtime
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
