"""Connection pools (async) with pgvector types registered and statement deadlines."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg.bit import register_bit_info
from pgvector.psycopg.halfvec import register_halfvec_info
from pgvector.psycopg.sparsevec import register_sparsevec_info
from pgvector.psycopg.vector import register_vector_info
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

DictConn = AsyncConnection[dict[str, Any]]

# pgvector's types and how each is registered: what `register_vector_async` does, with the
# four type lookups in one round trip instead of four transactions (twelve round trips).
_VECTOR_TYPES = {
    "vector": register_vector_info,
    "bit": register_bit_info,
    "halfvec": register_halfvec_info,
    "sparsevec": register_sparsevec_info,
}
_TYPE_INFO = (
    "SELECT t.typname AS name, t.oid, t.typarray AS array_oid,"
    " t.oid::regtype::text AS regtype, t.typdelim AS delimiter"
    " FROM unnest(%s::text[]) AS wanted(name) JOIN pg_type t ON t.oid = to_regtype(wanted.name)"
)


async def register_vector_types(conn: AsyncConnection[Any]) -> None:
    """Register pgvector's types on `conn` (an autocommit connection) in one round trip."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_TYPE_INFO, (list(_VECTOR_TYPES),))
    found = {row["name"]: TypeInfo(**row) for row in await cur.fetchall()}
    if "vector" not in found:
        raise psycopg.ProgrammingError("vector type not found in the database")
    for name, register in _VECTOR_TYPES.items():
        if name in found:
            register(conn, found[name])


def _configurer(
    statement_timeout_s: float | None, *, plan_once: bool
) -> Callable[[AsyncConnection[Any]], Awaitable[None]]:
    settings = []
    if statement_timeout_s is not None:
        # Every statement on this connection gets a deadline, and so does a transaction
        # left idle: neither can hold locks, a snapshot (vacuum) or a lease forever.
        ms = max(1, round(statement_timeout_s * 1000))
        settings += [f"statement_timeout = {ms}", f"idle_in_transaction_session_timeout = {ms}"]
    if plan_once:
        settings.append("plan_cache_mode = force_generic_plan")

    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)
        await register_vector_types(conn)
        if settings:
            # several commands in one string: never a prepared statement
            await conn.execute("; ".join(f"SET {s}" for s in settings), prepare=False)

    return configure


#: PostgreSQL's refusal of a prepared statement whose result columns changed under it
STALE_PLAN = "cached plan must not change result type"


class ReplanningConnection(AsyncConnection[Any]):
    """A connection whose autocommit statements survive a migration that adds a column.

    A statement prepared before another session altered a table it reads with `*` fails on
    every later run on this connection (SQLSTATE 0A000, `STALE_PLAN`): PostgreSQL will not
    change a prepared statement's result columns. Nothing ran, so outside a transaction the
    statement is run again after `DEALLOCATE ALL` (which psycopg also reads as the end of
    its own prepared set). Inside one, the error ends the transaction and its rollback makes
    psycopg forget its prepared statements anyway: the caller's retry runs them anew."""

    async def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> Any:
        try:
            return await super().execute(query, params, prepare=prepare, binary=binary)
        except psycopg.errors.FeatureNotSupported as exc:
            if STALE_PLAN not in str(exc) or self.info.transaction_status != TransactionStatus.IDLE:
                raise
        await super().execute("DEALLOCATE ALL", prepare=False)
        return await super().execute(query, params, prepare=prepare, binary=binary)


def _server_spoke(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection's socket has something to read: an idle server sends
    nothing unless it is going away (a terminated backend's FATAL, a restart's EOF) or has a
    notice or notification for us."""
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


async def _check(conn: AsyncConnection[Any]) -> None:
    """psycopg_pool's `check_connection` (a round trip) only when it can find something: a
    connection the server closed or spoke on while idle. A quiet one is handed out as is,
    which saves a round trip on every checkout (dozens per document). A peer that vanished
    without a word (a partition) would keep the round trip waiting as long as the statement
    that follows, so skipping it loses nothing there."""
    if conn.broken or conn.closed or _server_spoke(conn):
        await AsyncConnectionPool.check_connection(conn)


# Once the pool is open: how long one attempt to reopen a connection keeps retrying (1 s,
# then 2 s apart) before the pool gives it up; the next caller that needs a connection
# starts a fresh one at once. psycopg_pool's default (5 minutes) lets the delay double to
# 16 s and more, and only one attempt grows a pool at a time: after a PostgreSQL restart
# whose first attempts failed, callers waited out that schedule (a worker's claim once timed
# out after 30 s). Opening keeps the default: a server still starting gets the whole
# opening timeout.
RECONNECT_WINDOW_S = 3.0


async def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    name: str = "docingest",
    timeout: float = 30.0,
    statement_timeout_s: float | None = None,
    plan_once: bool = False,
) -> AsyncConnectionPool[DictConn]:
    """Open a pool of autocommit connections; explicit transactions use `conn.transaction()`.
    `timeout`: how long `connection()` waits for a free connection before `PoolTimeout`.
    `statement_timeout_s`: Postgres cancels any statement (and ends any transaction idle)
    longer than this on these connections (`QueryCanceled`).

    `plan_once`: every statement is prepared on its first run on a connection and planned
    once, for any parameters (a generic plan), instead of parsed and planned on every run
    until psycopg prepares it (its fifth) and PostgreSQL planned it five more times. For a
    fixed set of statements keyed by ids, such as the worker's: a claim that finds nothing
    takes about 2 ms parsed and planned and 0.5 ms with its generic plan
    (`bench/claim_cost.py`), and a worker runs it a few times per document. Not for statements
    whose best plan depends on the values (search)."""
    pool: AsyncConnectionPool[DictConn] = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        configure=_configurer(statement_timeout_s, plan_once=plan_once),
        kwargs={
            "row_factory": dict_row,
            "autocommit": True,
            **({"prepare_threshold": 0} if plan_once else {}),
        },
        connection_class=ReplanningConnection,
        check=_check,
    )
    await pool.open(wait=True, timeout=30)
    pool.reconnect_timeout = RECONNECT_WINDOW_S  # read by every later attempt (see above)
    return pool


#: how long `spare_connection` may wait for an idle connection it saw a moment ago
SPARE_WAIT_S = 0.005


@asynccontextmanager
async def spare_connection(pool: AsyncConnectionPool[DictConn]) -> AsyncIterator[DictConn | None]:
    """A second connection for work that can run beside the request's own, only if one is
    idle right now; None otherwise (the caller then does that work on its own connection).
    It never waits in the pool's queue, so it never delays another request's connection."""
    if pool.get_stats().get("pool_available", 0) == 0:
        yield None
        return
    try:
        conn = await pool.getconn(timeout=SPARE_WAIT_S)
    except PoolTimeout:
        yield None
        return
    try:
        yield conn
    finally:
        await pool.putconn(conn)
