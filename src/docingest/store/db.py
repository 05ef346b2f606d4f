"""Connection pools (async) with pgvector types registered."""

from __future__ import annotations

from typing import Any

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

DictConn = AsyncConnection[dict[str, Any]]


async def _configure(conn: AsyncConnection[Any]) -> None:
    await register_vector_async(conn)
    await conn.set_autocommit(True)


async def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    name: str = "docingest",
    timeout: float = 30.0,
) -> AsyncConnectionPool[DictConn]:
    """Open a pool of autocommit connections; explicit transactions use `conn.transaction()`.
    `timeout`: how long `connection()` waits for a free connection before `PoolTimeout`."""
    pool: AsyncConnectionPool[DictConn] = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        name=name,
        timeout=timeout,
        open=False,
        configure=_configure,
        kwargs={"row_factory": dict_row, "autocommit": True},
        connection_class=AsyncConnection,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool
