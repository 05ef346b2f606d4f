"""One partial HNSW index per (embed_model, embed_version) on `document_chunks`.

The `embedding` column is untyped `vector` so several models (and dimensions) can live side
by side; each index casts to its model's dimensions and covers only that model's rows.
"""

from __future__ import annotations

import contextlib
import hashlib

import psycopg
from psycopg import sql

from docingest.store.db import DictConn


async def supports_filtered_ann(conn: DictConn) -> bool:
    """pgvector >= 0.8 can keep scanning an HNSW index until enough rows pass a filter
    (`hnsw.iterative_scan`); older versions filter only the first `ef_search` candidates."""
    cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    row = await cur.fetchone()
    if row is None:
        return False
    major, minor = (int(x) for x in str(row["extversion"]).split(".")[:2])
    return (major, minor) >= (0, 8)


def index_name(model: str, version: str) -> str:
    digest = hashlib.sha256(f"{model}\x00{version}".encode()).hexdigest()[:12]
    return f"document_chunks_hnsw_{digest}"


async def ensure_vector_index(conn: DictConn, model: str, version: str, dimensions: int) -> str:
    """Create the index if missing (idempotent; concurrent callers are serialised by a lock)."""
    name = index_name(model, version)
    # Where searches can use the index (filtered iterative scans), build it for recall with
    # pgvector's defaults. Where they cannot (pgvector < 0.8: search ranks exactly within the
    # user's rows), keep the index cheap to maintain: on the embedded pgvector 0.6.2 each insert
    # at 1536 dimensions costs several times less with m=8 (bench/embed_throughput.py).
    params = (16, 64) if await supports_filtered_ann(conn) else (8, 32)
    cur = await conn.execute(
        "SELECT 1 FROM docingest.vector_indexes WHERE embed_model = %s AND embed_version = %s",
        (model, version),
    )
    if await cur.fetchone():
        return name
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        stmt = sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON docingest.document_chunks"
            " USING hnsw ((embedding::vector({d})) vector_cosine_ops)"
            " WITH (m = {m_links}, ef_construction = {ef})"
            " WHERE embed_model = {m} AND embed_version = {v}"
        ).format(
            name=sql.Identifier(name),
            d=sql.Literal(dimensions),
            m_links=sql.Literal(params[0]),
            ef=sql.Literal(params[1]),
            m=sql.Literal(model),
            v=sql.Literal(version),
        )
        with contextlib.suppress(psycopg.errors.UniqueViolation):  # lost a race: fine
            await conn.execute(stmt)
        await conn.execute(
            "INSERT INTO docingest.vector_indexes (embed_model, embed_version, dimensions, index_name)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (model, version, dimensions, name),
        )
    return name
