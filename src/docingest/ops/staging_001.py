"""Write side of the 001 migration: every row tagged with the migration batch, written with
binary COPY. Deterministic keys (001's own ids) make a rerun insert nothing.

Two ways in, chosen per document: a document this run has just inserted cannot own a chunk or
vector row yet (its chunk ids are UUIDv5 of its own id, and every other row referencing it
would have needed the document first), so its rows are COPYed straight into the docingest
tables. Rows of a document that already existed (a rerun, a later run after a partial one) go
through temporary staging tables shaped like the targets and `INSERT ... SELECT ... ON
CONFLICT DO NOTHING`. Vectors travel as pgvector's binary wire bytes, never decoded.

Placement (`carry`): `promoted` documents (002 `complete`) get their chunks and every vector
straight in `document_chunks`, because a complete document holds its vectors there and its
buffers are empty; `buffers` documents (`chunks_stored`, `embeddings_stored`,
`failed_embedding`) get `document_chunk_buffer` + `document_vector_buffer`, where the
BaseWorker continues; `none` documents carry no chunks (they are re-chunked or re-parsed).
The caller passes each (chunk, model/version) vector once: where a chunk has both a live
vector and a pending one, the live one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql


@dataclass(frozen=True)
class Sink:
    """One docingest table the migration writes chunk data to, and its COPY columns.

    Vector columns are typed `bytea` for COPY: binary COPY sends each field's bytes as they
    are and the server reads them with the column's own (`halfvec`) receive function."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    def copy(self, staged: bool) -> sql.Composed:
        target = (
            sql.Identifier(f"m001_{self.table}")
            if staged
            else sql.Identifier("docingest", self.table)
        )
        return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )

    def insert_staged(self) -> sql.Composed:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
            sql.Identifier("docingest", self.table),
            cols,
            cols,
            sql.Identifier(f"m001_{self.table}"),
        )


CHUNK_BUFFER = Sink(
    "document_chunk_buffer",
    (
        "chunk_id",
        "document_id",
        "chunk_ord",
        "chunker_name",
        "chunker_version",
        "chunk_sha",
        "text",
        "migration_batch",
    ),
    ("uuid", "uuid", "int4", "text", "text", "text", "text", "uuid"),
)
VECTOR_BUFFER = Sink(
    "document_vector_buffer",
    (
        "document_id",
        "chunk_id",
        "chunk_sha",
        "embed_model",
        "embed_version",
        "vector",
        "vector_sha",
        "batch_id",
        "migration_batch",
    ),
    ("uuid", "uuid", "text", "text", "text", "bytea", "text", "uuid", "uuid"),
)
CHUNKS = Sink(
    "document_chunks",
    (
        "chunk_id",
        "document_id",
        "user_id",
        "chunk_ord",
        "chunker_name",
        "chunker_version",
        "chunk_sha",
        "text",
        "embed_model",
        "embed_version",
        "embedding",
        "vector_sha",
        "migration_batch",
    ),
    (
        "uuid",
        "uuid",
        "uuid",
        "int4",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "bytea",
        "text",
        "uuid",
    ),
)
#: in foreign-key order (a buffered vector references its buffered chunk)
SINKS = (CHUNK_BUFFER, VECTOR_BUFFER, CHUNKS)

STAGE_DDL = (
    """CREATE TEMP TABLE m001_docs (
        document_id uuid PRIMARY KEY, user_id uuid, filename text, mime text, bytes_len bigint,
        file_sha256 text, raw_path text, created_at timestamptz, job_id uuid,
        status docingest.job_status, resume_status docingest.job_status, parsed_path text,
        parsed_sha256 text, chunks_version text, embed_model text, embed_version text,
        progress jsonb, retry_count integer, last_error jsonb, carry text)""",
    *(
        f"CREATE TEMP TABLE m001_{s.table} (LIKE docingest.{s.table} INCLUDING DEFAULTS)"
        for s in SINKS
    ),
)

DOC_COLUMNS = (
    "document_id, user_id, filename, mime, bytes_len, file_sha256, raw_path, created_at,"
    " job_id, status, resume_status, parsed_path, parsed_sha256, chunks_version, embed_model,"
    " embed_version, progress, retry_count, last_error, carry"
)
DOC_COPY = f"COPY m001_docs ({DOC_COLUMNS}) FROM STDIN"

_INSERT_DOCUMENTS = """INSERT INTO docingest.documents (document_id, user_id, filename, mime,
        bytes_len, file_sha256, raw_path, created_at, migration_batch)
    SELECT document_id, user_id, filename, mime, bytes_len, file_sha256, raw_path,
           coalesce(created_at, now()), %(batch)s
    FROM m001_docs ON CONFLICT DO NOTHING RETURNING document_id"""
_INSERT_JOBS = """INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, status,
        raw_path, parsed_path, parsed_sha256, chunks_version, embed_model, embed_version,
        progress, retry_count, last_error, resume_status, correlation_id, created_at,
        migration_batch)
    SELECT job_id, user_id, document_id, status, raw_path, parsed_path, parsed_sha256,
           chunks_version, embed_model, embed_version, progress, retry_count, last_error,
           resume_status, %(batch)s, coalesce(created_at, now()), %(batch)s
    FROM m001_docs ON CONFLICT DO NOTHING"""

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


async def apply_documents(
    conn: AsyncConnection[Any], batch: UUID
) -> tuple[dict[str, int], set[UUID]]:
    """Insert the staged documents and jobs: (rows written per table, ids of the documents
    inserted now). A rerun writes nothing and inserts no document."""
    cur = await conn.execute(_INSERT_DOCUMENTS, {"batch": batch})
    inserted = {r[0] for r in await cur.fetchall()}
    written = {"documents": len(inserted)}
    cur = await conn.execute(_INSERT_JOBS, {"batch": batch})
    written["upload_jobs"] = max(cur.rowcount, 0)
    adopted = 0
    for statement in _ADOPT_BLOBS:
        cur = await conn.execute(statement)
        adopted += max(cur.rowcount, 0)
    written["blob_paths_adopted"] = adopted
    return written, inserted


async def write(
    conn: AsyncConnection[Any], sink: Sink, rows: Sequence[Sequence[Any]], *, staged: bool
) -> int:
    """COPY `rows` into `sink`: straight into its table, or (`staged`) through its staging
    table with `ON CONFLICT DO NOTHING`. Returns the rows written."""
    if not rows:
        return 0
    async with conn.cursor().copy(sink.copy(staged)) as copy:
        copy.set_types(list(sink.types))
        for row in rows:
            await copy.write_row(row)
    if not staged:
        return len(rows)
    cur = await conn.execute(sink.insert_staged())
    return max(cur.rowcount, 0)


async def clear(conn: AsyncConnection[Any]) -> None:
    await conn.execute("TRUNCATE m001_docs, " + ", ".join(f"m001_{s.table}" for s in SINKS))
