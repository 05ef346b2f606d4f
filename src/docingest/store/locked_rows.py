"""Lock one row of a small shared-state table (rate budgets, circuit breakers) for a
read-modify-write by a pure function, in the caller's short transaction.

The database clock is returned with the row so that every machine decides on the same time.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from docingest.store.db import DictConn


async def lock_row(
    conn: DictConn, table: str, key_col: str, key: str
) -> tuple[dict[str, Any], float]:
    """Create the row with its defaults if missing, lock it (FOR UPDATE) and return it with
    `now` in epoch seconds. Call inside `conn.transaction()`."""
    select = sql.SQL(
        "SELECT *, extract(epoch FROM clock_timestamp())::float8 AS db_now"
        " FROM docingest.{t} WHERE {k} = %s FOR UPDATE"
    ).format(t=sql.Identifier(table), k=sql.Identifier(key_col))
    row = await (await conn.execute(select, (key,))).fetchone()
    if row is None:
        await conn.execute(
            sql.SQL("INSERT INTO docingest.{t} ({k}) VALUES (%s) ON CONFLICT DO NOTHING").format(
                t=sql.Identifier(table), k=sql.Identifier(key_col)
            ),
            (key,),
        )
        row = await (await conn.execute(select, (key,))).fetchone()
    assert row is not None
    return row, float(row["db_now"])
