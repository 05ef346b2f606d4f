"""Write side of the 001 migration: temporary staging tables filled with COPY, then one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` per docingest table, every row tagged with the
migration batch. Deterministic keys (001's own ids) make a rerun insert nothing.

Placement (`carry`): `promoted` documents (002 `complete`) get their chunks and every vector
straight in `document_chunks`, because a complete document holds its vectors there and its
buffers are empty; `buffers` documents (`chunks_stored`, `embeddings_stored`,
`failed_embedding`) get `document_chunk_buffer` + `document_vector_buffer`, where the
BaseWorker continues; `none` documents carry no chunks (they are re-chunked or re-parsed).
Where a chunk has both a live vector and a pending one of the same model/version, the live
one wins (the migration reports a differing pending one as a problem).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

STAGE_DDL = (
    """CREATE TEMP TABLE m001_docs (
        document_id uuid PRIMARY KEY, user_id uuid, filename text, mime text, bytes_len bigint,
        file_sha256 text, raw_path text, created_at timestamptz, job_id uuid,
        status docingest.job_status, resume_status docingest.job_status, parsed_path text,
        parsed_sha256 text, chunks_version text, embed_model text, embed_version text,
        progress jsonb, retry_count integer, last_error jsonb, carry text)""",
    """CREATE TEMP TABLE m001_chunks (
        document_id uuid, chunk_id uuid, chunk_ord integer, chunker_name text,
        chunker_version text, chunk_sha text, text text, embed_model text, embed_version text,
        vector vector, vector_sha text)""",
    """CREATE TEMP TABLE m001_pending (
        document_id uuid, chunk_id uuid, embed_model text, embed_version text,
        vector vector, vector_sha text)""",
    """CREATE TEMP VIEW m001_vectors AS
        SELECT document_id, chunk_id, embed_model, embed_version, vector, vector_sha, 0 AS pref
        FROM m001_chunks WHERE vector IS NOT NULL
        UNION ALL
        SELECT document_id, chunk_id, embed_model, embed_version, vector, vector_sha, 1
        FROM m001_pending""",
)

DOC_COLUMNS = (
    "document_id, user_id, filename, mime, bytes_len, file_sha256, raw_path, created_at,"
    " job_id, status, resume_status, parsed_path, parsed_sha256, chunks_version, embed_model,"
    " embed_version, progress, retry_count, last_error, carry"
)
CHUNK_COPY = (
    "COPY m001_chunks (document_id, chunk_id, chunk_ord, chunker_name, chunker_version,"
    " chunk_sha, text, embed_model, embed_version, vector, vector_sha)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
CHUNK_TYPES = [
    "uuid",
    "uuid",
    "int4",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "vector",
    "text",
]
PENDING_COPY = (
    "COPY m001_pending (document_id, chunk_id, embed_model, embed_version, vector, vector_sha)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
PENDING_TYPES = ["uuid", "uuid", "text", "text", "vector", "text"]
DOC_COPY = f"COPY m001_docs ({DOC_COLUMNS}) FROM STDIN"

# (table, statement): run in this order; each returns the rows it inserted
_INSERTS: tuple[tuple[str, str], ...] = (
    (
        "documents",
        """INSERT INTO docingest.documents (document_id, user_id, filename, mime, bytes_len,
               file_sha256, raw_path, created_at, migration_batch)
           SELECT document_id, user_id, filename, mime, bytes_len, file_sha256, raw_path,
                  coalesce(created_at, now()), %(batch)s
           FROM m001_docs ON CONFLICT DO NOTHING""",
    ),
    (
        "upload_jobs",
        """INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, status, raw_path,
               parsed_path, parsed_sha256, chunks_version, embed_model, embed_version, progress,
               retry_count, last_error, resume_status, correlation_id, created_at,
               migration_batch)
           SELECT job_id, user_id, document_id, status, raw_path, parsed_path, parsed_sha256,
                  chunks_version, embed_model, embed_version, progress, retry_count, last_error,
                  resume_status, %(batch)s, coalesce(created_at, now()), %(batch)s
           FROM m001_docs ON CONFLICT DO NOTHING""",
    ),
    (
        "document_chunk_buffer",
        """INSERT INTO docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord,
               chunker_name, chunker_version, chunk_sha, text, migration_batch)
           SELECT c.chunk_id, c.document_id, c.chunk_ord, c.chunker_name, c.chunker_version,
                  c.chunk_sha, c.text, %(batch)s
           FROM m001_chunks c JOIN m001_docs d ON d.document_id = c.document_id
           WHERE d.carry = 'buffers' ON CONFLICT DO NOTHING""",
    ),
    (
        "document_vector_buffer",
        """INSERT INTO docingest.document_vector_buffer (document_id, chunk_id, embed_model,
               embed_version, vector, vector_sha, batch_id, migration_batch)
           SELECT DISTINCT ON (v.chunk_id, v.embed_model, v.embed_version)
                  v.document_id, v.chunk_id, v.embed_model, v.embed_version, v.vector,
                  v.vector_sha, %(batch)s, %(batch)s
           FROM m001_vectors v JOIN m001_docs d ON d.document_id = v.document_id
           WHERE d.carry = 'buffers'
           ORDER BY v.chunk_id, v.embed_model, v.embed_version, v.pref
           ON CONFLICT DO NOTHING""",
    ),
    (
        "document_chunks",
        """INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,
               chunker_name, chunker_version, chunk_sha, text, embed_model, embed_version,
               embedding, vector_sha, migration_batch)
           SELECT DISTINCT ON (c.chunk_id, v.embed_model, v.embed_version)
                  c.chunk_id, c.document_id, d.user_id, c.chunk_ord, c.chunker_name,
                  c.chunker_version, c.chunk_sha, c.text, v.embed_model, v.embed_version,
                  v.vector, v.vector_sha, %(batch)s
           FROM m001_chunks c JOIN m001_docs d ON d.document_id = c.document_id
           JOIN m001_vectors v ON v.chunk_id = c.chunk_id
           WHERE d.carry = 'promoted'
           ORDER BY c.chunk_id, v.embed_model, v.embed_version, v.pref
           ON CONFLICT DO NOTHING""",
    ),
)

# Paths a previous batch carried as `storage://...` (no --blobs-from then) now point at blobs.
_ADOPT_BLOBS = (
    """UPDATE docingest.documents t SET raw_path = d.raw_path FROM m001_docs d
       WHERE t.document_id = d.document_id AND t.raw_path LIKE 'storage://%'
         AND d.raw_path NOT LIKE 'storage://%'""",
    """UPDATE docingest.upload_jobs t SET raw_path = d.raw_path,
           parsed_path = CASE WHEN t.parsed_path LIKE 'storage://%' AND t.parsed_sha256 = d.parsed_sha256
                              THEN d.parsed_path ELSE t.parsed_path END,
           updated_at = now()
       FROM m001_docs d
       WHERE t.document_id = d.document_id AND t.raw_path LIKE 'storage://%'
         AND d.raw_path NOT LIKE 'storage://%'""",
)


async def create(conn: AsyncConnection[Any]) -> None:
    for ddl in STAGE_DDL:
        await conn.execute(ddl)


async def conflicting_files(conn: AsyncConnection[Any]) -> list[tuple[UUID, UUID]]:
    """Staged documents whose (user, file hash) already belongs to another docingest
    document: (001 document id, existing docingest document id)."""
    cur = await conn.execute(
        "SELECT d.document_id, t.document_id FROM m001_docs d JOIN docingest.documents t"
        " ON t.user_id = d.user_id AND t.file_sha256 = d.file_sha256"
        " AND t.document_id <> d.document_id"
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def unstage(conn: AsyncConnection[Any], document_ids: list[UUID]) -> None:
    await conn.execute("DELETE FROM m001_docs WHERE document_id = ANY(%s)", (document_ids,))


async def apply(conn: AsyncConnection[Any], batch: UUID) -> dict[str, int]:
    """Insert the staged rows; returns rows written per table (0 everywhere on a rerun)."""
    written: dict[str, int] = {}
    for table, statement in _INSERTS:
        cur = await conn.execute(statement, {"batch": batch})
        written[table] = max(cur.rowcount, 0)
    adopted = 0
    for statement in _ADOPT_BLOBS:
        cur = await conn.execute(statement)
        adopted += max(cur.rowcount, 0)
    written["blob_paths_adopted"] = adopted
    return written


async def clear(conn: AsyncConnection[Any]) -> None:
    await conn.execute("TRUNCATE m001_docs, m001_chunks, m001_pending")
