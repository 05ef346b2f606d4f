"""The optional approximate (HNSW) index per (embed_model, embed_version), built in bulk.

Search is exact within the caller's rows by default (store/vector_search.py). A deployment with
very large per-user collections can build an approximate index with
`docingest vector-index build`: `CREATE INDEX CONCURRENTLY` (reads and writes go on; pgvector
builds HNSW with parallel workers), never maintained row by row during ingest. The index is
partial: it covers the model's rows promoted up to the build's `covers_until` (database
clock), so rows promoted later never enter it and cost the hot path nothing. Search uses the
index for those rows and ranks the newer ones exactly, then merges; rebuilding moves the
watermark (the new index is built before the old one is dropped, so search never lacks one).

The `embedding` column is untyped `halfvec` so several models (and dimensions) can live side
by side; each index casts to its model's dimensions and covers only that model's rows.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from docingest.store.db import DictConn

#: HNSW build parameters: pgvector's defaults (the recall measured in bench/search_latency.py)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


@dataclass(frozen=True)
class VectorIndex:
    model: str
    version: str
    dimensions: int
    name: str
    covers_until: datetime


def index_name(model: str, version: str, built_at_ms: int) -> str:
    digest = hashlib.sha256(f"{model}\x00{version}".encode()).hexdigest()[:12]
    return f"document_chunks_ann_{digest}_{built_at_ms}"


async def current(conn: DictConn, model: str, version: str) -> VectorIndex | None:
    """The model's approximate index, when one is built and valid."""
    cur = await conn.execute(
        "SELECT vi.embed_model, vi.embed_version, vi.dimensions, vi.index_name, vi.covers_until"
        " FROM docingest.vector_indexes vi"
        " JOIN pg_class c ON c.relname = vi.index_name"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'docingest'"
        " JOIN pg_index i ON i.indexrelid = c.oid AND i.indisvalid"
        " WHERE vi.embed_model = %s AND vi.embed_version = %s",
        (model, version),
    )
    row = await cur.fetchone()
    return _from_row(row) if row else None


def _from_row(row: dict[str, object]) -> VectorIndex:
    covers = row["covers_until"]
    assert isinstance(covers, datetime)
    return VectorIndex(
        str(row["embed_model"]),
        str(row["embed_version"]),
        int(str(row["dimensions"])),
        str(row["index_name"]),
        covers,
    )


def build(
    dsn: str,
    model: str,
    version: str,
    dimensions: int,
    *,
    maintenance_work_mem_mb: int = 1024,
    parallel_workers: int = 2,
) -> VectorIndex:
    """Build (or rebuild) the model's approximate index over every row promoted so far, then
    drop the one it replaces. Schema owner only (DDL). Blocks until the build is done."""
    built_at_ms = int(time.time() * 1000)
    name = index_name(model, version, built_at_ms)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            sql.SQL("SET maintenance_work_mem = {}").format(
                sql.Literal(f"{maintenance_work_mem_mb}MB")
            )
        )
        conn.execute(
            sql.SQL("SET max_parallel_maintenance_workers = {}").format(
                sql.Literal(parallel_workers)
            )
        )
        row = conn.execute("SELECT now() AS covers_until").fetchone()
        assert row is not None
        covers_until = row["covers_until"]
        stmt = sql.SQL(
            "CREATE INDEX CONCURRENTLY {name} ON docingest.document_chunks"
            " USING hnsw ((embedding::halfvec({d})) halfvec_cosine_ops)"
            " WITH (m = {m_links}, ef_construction = {ef})"
            " WHERE embed_model = {m} AND embed_version = {v} AND created_at <= {w}"
        ).format(
            name=sql.Identifier(name),
            d=sql.Literal(dimensions),
            m_links=sql.Literal(HNSW_M),
            ef=sql.Literal(HNSW_EF_CONSTRUCTION),
            m=sql.Literal(model),
            v=sql.Literal(version),
            w=sql.Literal(covers_until),
        )
        try:
            conn.execute(stmt)
        except psycopg.Error:
            # a failed concurrent build leaves an INVALID index behind
            conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier("docingest", name)
                )
            )
            raise
        with conn.transaction():
            old = conn.execute(
                "SELECT index_name FROM docingest.vector_indexes"
                " WHERE embed_model = %s AND embed_version = %s FOR UPDATE",
                (model, version),
            ).fetchone()
            conn.execute(
                "INSERT INTO docingest.vector_indexes"
                " (embed_model, embed_version, dimensions, index_name, covers_until)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (embed_model, embed_version) DO UPDATE SET"
                " dimensions = excluded.dimensions, index_name = excluded.index_name,"
                " covers_until = excluded.covers_until, created_at = now()",
                (model, version, dimensions, name, covers_until),
            )
        if old is not None:
            _drop_index(conn, str(old["index_name"]))
    return VectorIndex(model, version, dimensions, name, covers_until)


def drop(dsn: str, model: str, version: str) -> bool:
    """Remove the model's approximate index (search goes back to exact). False if none."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(
            "DELETE FROM docingest.vector_indexes WHERE embed_model = %s AND embed_version = %s"
            " RETURNING index_name",
            (model, version),
        ).fetchone()
        if row is None:
            return False
        _drop_index(conn, str(row["index_name"]))
    return True


def _drop_index(conn: psycopg.Connection[dict[str, object]], name: str) -> None:
    conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier("docingest", name))
    )
