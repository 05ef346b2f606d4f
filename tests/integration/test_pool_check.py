"""The pool's checkout check: a connection whose backend went away while it sat idle in the
pool is replaced, never handed out, and a quiet one is handed out without the round trip of
psycopg_pool's stock check."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from docingest.store.db import open_pool


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the stock check's round trips (it still runs when the server spoke)."""
    calls: list[int] = []
    stock = AsyncConnectionPool.check_connection

    async def counted(conn: psycopg.AsyncConnection[object]) -> None:
        calls.append(1)
        await stock(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))
    return calls


async def test_a_connection_whose_backend_was_terminated_is_never_handed_out(
    dsn: str, round_trips: list[int]
) -> None:
    async with await open_pool(dsn, min_size=2, max_size=2) as pool:
        async with pool.connection() as a, pool.connection() as b:
            dead = {a.info.backend_pid, b.info.backend_pid}
        with psycopg.connect(dsn, autocommit=True) as admin:
            for pid in dead:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits for the exit
        for _ in range(4):  # every checkout works: the dead ones were swapped for new ones
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
                assert row is not None and row["pid"] not in dead
        assert round_trips  # found by the stock check, which ran because the server spoke


async def test_a_quiet_connection_is_handed_out_without_a_round_trip(
    dsn: str, round_trips: list[int]
) -> None:
    async with await open_pool(dsn, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
        for _ in range(3):
            async with pool.connection() as conn:
                assert conn.info.backend_pid == first  # the same connection, not replaced
        assert round_trips == []
