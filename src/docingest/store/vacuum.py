"""VACUUM after deletes (PHI at rest; docs/security.md).

A DELETE only marks rows dead: their bytes stay in the table's pages, readable by nothing
through SQL but present on disk, until VACUUM makes the space reusable and new rows overwrite
it (and trailing empty pages are truncated away). VACUUM does not zero the pages, and the
write-ahead log keeps what was written until its segments are recycled: only the storage's
encryption protects those bytes (store/at_rest.py).

VACUUM cannot run inside a transaction and needs ownership of the tables (or, from
PostgreSQL 17, the MAINTAIN privilege migration 0007 grants the API role); without the right,
Postgres skips the table with a warning and autovacuum does the work later.
`VacuumAfterDeletes` runs in the API process: a delete asks for one, and at most one runs per
`min_interval_s`, on a connection of its own (never one of the request pool).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DOCUMENT_TABLES = (
    "documents",
    "upload_jobs",
    "document_chunk_buffer",
    "document_vector_buffer",
    "document_chunks",
)
#: VACUUM of large tables takes long; it still has a deadline
VACUUM_TIMEOUT_S = 600


async def vacuum(dsn: str, tables: tuple[str, ...] = DOCUMENT_TABLES) -> None:
    """VACUUM the named `docingest` tables, outside any transaction."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"SET statement_timeout = {VACUUM_TIMEOUT_S * 1000}")
        names = sql.SQL(", ").join(sql.Identifier("docingest", t) for t in tables)
        await conn.execute(sql.SQL("VACUUM {}").format(names))


class VacuumAfterDeletes:
    def __init__(self, dsn: str, min_interval_s: float = 60.0) -> None:
        self.dsn = dsn
        self.min_interval_s = min_interval_s
        self._wanted = asyncio.Event()

    def request(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        """Until cancelled: wait for a request, vacuum, rest `min_interval_s`."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await vacuum(self.dsn)
            except psycopg.Error:
                log.warning("vacuum after delete failed", extra={"action": "vacuum_error"})
            await asyncio.sleep(self.min_interval_s)
