"""`docingest migrate-001 rollback --batch ID`: remove exactly one migration batch.

Deletes the batch's rows (children first, then its documents, whose cascade also removes
anything a docingest worker added to those documents since), then the blobs those rows
pointed at, and records one audit event. The 001 database is not involved at all. Rows
docingest wrote for its own uploads carry no batch tag and are never touched.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from docingest.domain.legacy_001 import is_legacy_path
from docingest.store import events
from docingest.store.blobs import BlobStore

# children first, so each count is the batch's own rows
_TABLES = (
    "document_chunks",
    "document_vector_buffer",
    "document_chunk_buffer",
    "upload_jobs",
    "documents",
)


async def rollback(
    dsn: str, batch: UUID, blobs: BlobStore | None, *, actor: str = "cli:migrate-001"
) -> dict[str, int]:
    """Remove batch `batch`. Returns rows deleted per table (empty for an unknown batch)."""
    removed: dict[str, int] = {}
    conn: AsyncConnection[Any] = await AsyncConnection.connect(dsn)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "DELETE FROM docingest.migration_batches WHERE batch_id = %s RETURNING 1",
                (batch,),
            )
            if await cur.fetchone() is None:
                return {}
            cur = await conn.execute(
                "SELECT d.raw_path, j.parsed_path FROM docingest.documents d"
                " LEFT JOIN docingest.upload_jobs j USING (document_id)"
                " WHERE d.migration_batch = %s",
                (batch,),
            )
            keys = {p for row in await cur.fetchall() for p in row if p and not is_legacy_path(p)}
            for table in _TABLES:
                cur = await conn.execute(
                    f"DELETE FROM docingest.{table} WHERE migration_batch = %s",  # fixed names
                    (batch,),
                )
                removed[table] = max(cur.rowcount, 0)
            await events.record(
                conn,
                actor=actor,
                action="migration.001.rollback",
                detail={"batch": str(batch), "removed": removed, "blobs": len(keys)},
            )
    finally:
        await conn.close()
    if blobs is not None:
        for key in sorted(keys):
            await blobs.delete(key)
    return removed
