"""Readiness reports a database that cannot answer as `database unreachable`, and nothing
else as such: a bug in the check surfaces as the bug, not as an outage."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from docingest.api.routes.health import _database_check
from docingest.api.state import AppState
from docingest.store import migrate
from docingest.store.db import open_pool


def _state(pool: AsyncConnectionPool[Any]) -> AppState:
    return cast(AppState, SimpleNamespace(pool=pool))


async def test_a_current_database_is_ready(dsn: str) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        assert await _database_check(_state(pool)) == (migrate.head(), None)
    finally:
        await pool.close()


async def test_a_failing_query_is_the_database_unreachable(dsn: str) -> None:
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:  # the check's query now fails
            conn.execute("ALTER TABLE docingest.schema_migrations RENAME TO gone")
        assert await _database_check(_state(pool)) == (0, "database unreachable")
    finally:
        await pool.close()


async def test_a_bug_in_the_check_is_not_reported_as_an_outage(dsn: str) -> None:
    # rows as tuples: the check's `row["v"]` is then a programming error (TypeError)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    try:
        with pytest.raises(TypeError):
            await _database_check(_state(pool))
    finally:
        await pool.close()
