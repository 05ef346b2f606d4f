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


def index_name(model: str, version: str) -> str:
    digest = hashlib.sha256(f"{model}\x00{version}".encode()).hexdigest()[:12]
    return f"document_chunks_hnsw_{digest}"


async def ensure_vector_index(conn: DictConn, model: str, version: str, dimensions: int) -> str:
    """Create the index if missing (idempotent; concurrent callers are serialised by a lock)."""
    name = index_name(model, version)
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
            " WHERE embed_model = {m} AND embed_version = {v}"
        ).format(
            name=sql.Identifier(name),
            d=sql.Literal(dimensions),
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
