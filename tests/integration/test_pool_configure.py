"""A pool connection comes configured: pgvector's types registered (from one lookup, not four
transactions) and the statement deadlines set; a worker's pool (`plan_once`) plans each
statement once per connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector

from docingest.store import jobs
from docingest.store.db import RECONNECT_WINDOW_S, DictConn, open_pool
from docingest.store.records import Job
from docingest.worker.runner import run_worker
from tests.helpers import make_runtime


async def test_a_new_connection_has_vector_types_and_deadlines(dsn: str) -> None:
    pool = await open_pool(dsn, statement_timeout_s=7)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT %s::vector AS v, %s::halfvec AS h, '[1,2]'::halfvec AS lit,"
                " current_setting('statement_timeout') AS st,"
                " current_setting('idle_in_transaction_session_timeout') AS idle",
                (np.array([1.0, 2.0, 3.0]), HalfVector([0.5, 0.25])),
            )
            row = await cur.fetchone()
            assert row is not None
            assert row["v"].to_list() == [1.0, 2.0, 3.0]
            assert row["h"].to_list() == [0.5, 0.25]
            assert isinstance(row["lit"], HalfVector)
            assert (row["st"], row["idle"]) == ("7s", "7s")
    finally:
        await pool.close()


async def test_configuring_a_connection_takes_two_statements(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One type lookup and one SET of both deadlines (pgvector's own registration made
    four lookups, each in a transaction of its own)."""
    statements: list[str] = []
    stock = psycopg.AsyncCursor.execute

    async def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return await stock(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
    pool = await open_pool(dsn, min_size=1, max_size=1, statement_timeout_s=7)
    await pool.close()
    assert len(statements) == 2, statements


async def test_an_open_pool_gives_up_a_failing_reconnect_within_its_window(dsn: str) -> None:
    """Opening waits as long as psycopg_pool's default allows; once open, an attempt that
    keeps failing is given up after `RECONNECT_WINDOW_S`, so the next caller starts afresh
    instead of waiting out a doubling delay."""
    pool = await open_pool(dsn, min_size=1, max_size=1)
    try:
        assert pool.reconnect_timeout == RECONNECT_WINDOW_S < 5
    finally:
        await pool.close()


_CLAIM_PLANS = (
    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
    " WHERE statement LIKE '%%WITH dead AS MATERIALIZED%%'"
    " AND statement NOT LIKE '%%pg_prepared_statements%%'"  # this query, prepared too
)


@pytest.mark.parametrize("plan_once", [True, False])
async def test_a_plan_once_pool_prepares_the_claim_at_once_with_one_generic_plan(
    dsn: str, plan_once: bool
) -> None:
    """With `plan_once` the claim is prepared on its first run and never planned again for
    its values; without it, psycopg prepares it only on its fifth run on the connection, so
    three claims leave nothing prepared (each was parsed and planned in full)."""
    pool = await open_pool(dsn, max_size=1, statement_timeout_s=7, plan_once=plan_once)
    try:
        async with pool.connection() as conn:
            for _ in range(3):
                assert await jobs.claim_many(conn, "w-plan", 60, limit=2) == []
            plans = await (await conn.execute(_CLAIM_PLANS)).fetchall()
            mode = await (
                await conn.execute("SELECT current_setting('plan_cache_mode') AS m")
            ).fetchone()
            timeout = await (
                await conn.execute("SELECT current_setting('statement_timeout') AS t")
            ).fetchone()
    finally:
        await pool.close()
    assert timeout == {"t": "7s"}  # the deadlines are set either way
    if plan_once:
        assert plans == [{"generic_plans": 3, "custom_plans": 0}]
        assert mode == {"m": "force_generic_plan"}
    else:
        assert plans == []
        assert mode == {"m": "auto"}


async def test_the_worker_claims_with_its_generic_plan(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own pool is a `plan_once` one: right after its first claim, that
    connection holds the claim prepared, planned generically, never for its values."""
    rt = make_runtime(dsn, tmp_path / "home", DOCINGEST_EMBEDDER="hash")
    seen: list[dict[str, Any]] = []
    real_claim = jobs.claim_many

    async def claim_and_look(conn: DictConn, *args: Any, limit: int) -> list[Job]:
        got = await real_claim(conn, *args, limit=limit)
        seen.extend(await (await conn.execute(_CLAIM_PLANS, prepare=False)).fetchall())
        return got

    monkeypatch.setattr(jobs, "claim_many", claim_and_look)
    await run_worker(rt, once=True, handle_signals=False)
    assert seen == [{"generic_plans": 1, "custom_plans": 0}]


async def test_a_statement_prepared_before_a_column_was_added_runs_after_it(dsn: str) -> None:
    """PostgreSQL refuses a prepared statement whose `*` gained a column (a migration ran
    while the worker was up); the connection forgets its prepared statements and runs it
    again, with the new column, instead of failing on it until the worker restarts."""
    pool = await open_pool(dsn, max_size=1, plan_once=True)
    try:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE replanned (a int)")
            await conn.execute("INSERT INTO replanned VALUES (1)")
            query = "SELECT * FROM replanned WHERE a = %s"
            assert await (await conn.execute(query, (1,))).fetchall() == [{"a": 1}]
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
                await other.execute("ALTER TABLE replanned ADD COLUMN b int")
            for _ in range(2):
                assert await (await conn.execute(query, (1,))).fetchall() == [{"a": 1, "b": None}]
            with pytest.raises(psycopg.errors.FeatureNotSupported):  # a transaction ends
                async with conn.transaction():
                    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
                        await other.execute("ALTER TABLE replanned ADD COLUMN c int")
                    await conn.execute(query, (1,))
            # and its rollback made psycopg forget what it had prepared
            rows = await (await conn.execute(query, (1,))).fetchall()
            assert rows == [{"a": 1, "b": None, "c": None}]
    finally:
        await pool.close()
