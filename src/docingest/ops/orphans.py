"""Blobs no row references (`docingest purge` sweeps them; issue 11).

Every blob is written before the row that names it commits (uploads, parsed artifacts), and
removed after the row that named it is deleted. A crash between the two, or a write that
raced a DELETE and lost, leaves an object that nothing references: it may hold a document's
text (encrypted, but decryptable with the master key), so it must go. An object is an orphan
when no `documents.raw_path`, `upload_jobs.raw_path` or `upload_jobs.parsed_path` names it and
it is older than `grace` (an upload in flight publishes its blob moments before recording it).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn

DEFAULT_GRACE = timedelta(hours=1)

_REFERENCED = """
SELECT raw_path AS key FROM docingest.documents
UNION SELECT raw_path FROM docingest.upload_jobs
UNION SELECT parsed_path FROM docingest.upload_jobs WHERE parsed_path IS NOT NULL
"""


async def referenced_keys(conn: DictConn) -> set[str]:
    cur = await conn.execute(_REFERENCED)
    return {row["key"] for row in await cur.fetchall()}


async def find_orphans(
    conn: DictConn, blobs: BlobStore, grace: timedelta = DEFAULT_GRACE
) -> list[str]:
    """Keys of objects older than `grace` that no row names. The listing is taken before the
    references are read, so an object recorded in between is never taken for an orphan."""
    cutoff = time.time() - grace.total_seconds()
    listed = await asyncio.to_thread(
        lambda: [key for key, modified in blobs.iter_objects() if modified < cutoff]
    )
    referenced = await referenced_keys(conn)
    return [key for key in listed if key not in referenced]


async def remove_orphans(
    conn: DictConn, blobs: BlobStore, grace: timedelta = DEFAULT_GRACE, *, dry_run: bool = False
) -> list[str]:
    orphans = await find_orphans(conn, blobs, grace)
    if not dry_run:
        for key in orphans:
            await blobs.delete(key)
    return orphans
