"""Retention: remove documents older than a cut-off (`docingest purge --older-than DAYS`).

Each document goes through the same code path as `DELETE /v1/documents/{id}`
(`store.documents.delete`): its job, chunks, vectors and buffers (cascade) and its blobs
are removed, the audit trail stays, and one `document.purge` event (ids only) is written
per document. Then blobs no row references are removed (ops/orphans.py) and the document
tables are vacuumed (store/vacuum.py), so the deleted rows' space is reclaimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from docingest.ops.orphans import remove_orphans
from docingest.store import documents
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn

ACTOR = "ops:purge"
ACTION = "document.purge"


@dataclass(frozen=True)
class PurgeResult:
    document_ids: list[UUID]  # purged, or that would be with dry_run
    dry_run: bool
    orphan_blobs: list[str] = field(default_factory=list)  # removed (or would be) unreferenced


async def expired(conn: DictConn, older_than: timedelta) -> list[tuple[UUID, UUID]]:
    """(document_id, user_id) of every document created before now() - older_than."""
    cur = await conn.execute(
        "SELECT document_id, user_id FROM docingest.documents"
        " WHERE created_at < now() - %s ORDER BY created_at, document_id",
        (older_than,),
    )
    return [(row["document_id"], row["user_id"]) for row in await cur.fetchall()]


async def purge(
    conn: DictConn, blobs: BlobStore, older_than: timedelta, *, dry_run: bool = False
) -> PurgeResult:
    """Remove every document older than `older_than` (each in its own transaction)."""
    candidates = await expired(conn, older_than)
    if dry_run:
        orphans = await remove_orphans(conn, blobs, dry_run=True)
        return PurgeResult([doc for doc, _ in candidates], dry_run=True, orphan_blobs=orphans)
    purged = [
        doc
        for doc, user in candidates
        if await documents.delete(conn, blobs, doc, user, actor=ACTOR, action=ACTION)
    ]
    return PurgeResult(purged, dry_run=False, orphan_blobs=await remove_orphans(conn, blobs))
