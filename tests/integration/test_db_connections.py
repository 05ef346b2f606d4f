"""store/db.py's connection handling: the pool's checkout check (a connection whose backend
went away while it sat idle in the pool is replaced, never handed out, and a quiet one is
handed out without the round trip of psycopg_pool's stock check), and `atomic`."""

from __future__ import annotations

import contextlib

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from docingest.store.db import atomic, open_pool


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


async def test_atomic_joins_the_callers_transaction_and_stands_alone_outside_one(
    dsn: str,
) -> None:
    async with await open_pool(dsn, min_size=1, max_size=1) as pool, pool.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t (x int)")
        async with atomic(conn):  # alone: its own transaction, committed
            await conn.execute("INSERT INTO t VALUES (1)")
        assert conn.info.transaction_status is TransactionStatus.IDLE
        try:
            async with conn.transaction():
                async with atomic(conn):  # inside: no savepoint of its own
                    await conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("the caller fails after the atomic block")
        except RuntimeError:
            pass
        rows = await (await conn.execute("SELECT x FROM t ORDER BY x")).fetchall()
        assert [r["x"] for r in rows] == [1]  # 2 went with the caller's rollback
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            async with conn.transaction():
                with contextlib.suppress(psycopg.errors.DivisionByZero):
                    async with atomic(conn):
                        await conn.execute("SELECT 1 / 0")
                # no savepoint was rolled back to: the failure is the caller's transaction's
                await conn.execute("INSERT INTO t VALUES (3)")
