"""Chunk and vector buffers, vector reuse, and promotion into `document_chunks`.

Vectors are written once, as `halfvec` in the form search reads (pipeline/stored_vector.py),
into `document_vector_buffer`; promotion moves them into the searchable table with one
set-based statement inside the database, so no vector crosses the wire twice.
Search itself is `store/search.py` (vector ranking: `store/vector_search.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from pgvector import HalfVector
from psycopg.types.json import Jsonb

from docingest.pipeline.hashing import vector_sha
from docingest.store.db import DictConn


@dataclass(frozen=True)
class ChunkRow:
    chunk_id: UUID
    chunk_ord: int
    chunk_sha: str
    text: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class VectorRow:
    """One chunk's vector as it will be stored (`stored_vector.as_stored`) and its hash."""

    chunk_id: UUID
    chunk_sha: str
    vector: npt.NDArray[np.float32]
    vector_sha: str


async def insert_chunk_buffer(
    conn: DictConn,
    document_id: UUID,
    chunker_name: str,
    chunker_version: str,
    rows: Sequence[ChunkRow],
) -> int:
    """Insert chunks; existing (document, chunker, ord) rows are left alone. Returns rows added.
    One statement for all of them (arrays unnested server-side, sent binary), as
    `insert_vectors` does, not one per chunk."""
    if not rows:
        return 0
    cur = await conn.execute(
        "INSERT INTO docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord,"
        " chunker_name, chunker_version, chunk_sha, text, meta)"
        " SELECT r.chunk_id, %(doc)s, r.chunk_ord, %(name)s, %(version)s, r.chunk_sha, r.text,"
        " r.meta FROM unnest(%(ids)b::uuid[], %(ords)b::int4[], %(shas)b::text[],"
        " %(texts)b::text[], %(metas)b::jsonb[]) AS r(chunk_id, chunk_ord, chunk_sha, text, meta)"
        " ON CONFLICT DO NOTHING",
        {
            "doc": document_id,
            "name": chunker_name,
            "version": chunker_version,
            "ids": [r.chunk_id for r in rows],
            "ords": [r.chunk_ord for r in rows],
            "shas": [r.chunk_sha for r in rows],
            "texts": [r.text for r in rows],
            "metas": [Jsonb(r.meta) for r in rows],
        },
    )
    return max(cur.rowcount, 0)


async def parse_words(conn: DictConn, chunk_ids: Sequence[UUID]) -> None:
    """Parse the given buffered chunks' words for search (English, as search parses a
    question), where not yet done (migration 0019: the worker does it while embedding)."""
    await conn.execute(
        "UPDATE docingest.document_chunk_buffer"
        " SET text_words = to_tsvector('english'::regconfig, text)"
        " WHERE chunk_id = ANY(%s::uuid[]) AND text_words IS NULL",
        (list(chunk_ids),),
    )


async def count_chunk_buffer(
    conn: DictConn, document_id: UUID, chunker_name: str, chunker_version: str
) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM docingest.document_chunk_buffer WHERE document_id = %s"
        " AND chunker_name = %s AND chunker_version = %s",
        (document_id, chunker_name, chunker_version),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def reuse_vectors(
    conn: DictConn,
    document_id: UUID,
    model: str,
    version: str,
    batch_id: UUID,
    chunk_ids: Sequence[UUID],
) -> set[UUID]:
    """Copy vectors for the given chunks whose exact text (chunk_sha) was already embedded with
    the same model/version, by any document or earlier in this one, instead of paying for a
    new call. Returns the chunk ids given a vector.

    Linear in the chunks asked about, however many chunks share a text: each distinct text
    costs one probe of the searchable rows and one of the buffered vectors (both indexed by
    model, version, chunk_sha, and holding only rows that have a vector), then every chunk of
    that text gets the vector found. Chunks still waiting for a vector are never walked."""
    cur = await conn.execute(
        """
        WITH wanted AS MATERIALIZED (
            -- chunks that already have a vector are skipped by ON CONFLICT (and not
            -- returned); an anti-join here would read the whole vector buffer
            SELECT cb.chunk_id, cb.chunk_sha FROM docingest.document_chunk_buffer cb
            WHERE cb.chunk_id = ANY(%(ids)s::uuid[]) AND cb.document_id = %(doc)s
        ), found AS MATERIALIZED (
            SELECT t.chunk_sha, src.vector, src.vector_sha
            FROM (SELECT DISTINCT chunk_sha FROM wanted) t
            CROSS JOIN LATERAL (
                (SELECT dc.embedding AS vector, dc.vector_sha FROM docingest.document_chunks dc
                 WHERE dc.embed_model = %(m)s AND dc.embed_version = %(v)s
                   AND dc.chunk_sha = t.chunk_sha LIMIT 1)
                UNION ALL
                (SELECT vb.vector, vb.vector_sha FROM docingest.document_vector_buffer vb
                 WHERE vb.embed_model = %(m)s AND vb.embed_version = %(v)s
                   AND vb.chunk_sha = t.chunk_sha LIMIT 1)
                LIMIT 1
            ) src
        )
        INSERT INTO docingest.document_vector_buffer (document_id, chunk_id, chunk_sha,
            embed_model, embed_version, vector, vector_sha, batch_id, reused)
        SELECT %(doc)s, w.chunk_id, w.chunk_sha, %(m)s, %(v)s, f.vector, f.vector_sha,
               %(batch)s, true
        FROM wanted w JOIN found f USING (chunk_sha)
        ON CONFLICT DO NOTHING
        RETURNING chunk_id
        """,
        {
            "m": model,
            "v": version,
            "batch": batch_id,
            "doc": document_id,
            "ids": list(chunk_ids),
        },
    )
    return {row["chunk_id"] for row in await cur.fetchall()}


async def missing_vectors(
    conn: DictConn,
    document_id: UUID,
    chunker: tuple[str, str],
    model: str,
    version: str,
    limit: int,
    after_ord: int = -1,
) -> list[ChunkRow]:
    """The next chunks of the document after `after_ord` that have no vector yet, in order.
    Walks the (document, chunker, ord) index and stops at `limit`, so the cost does not grow
    with the document."""
    cur = await conn.execute(
        "SELECT cb.chunk_id, cb.chunk_ord, cb.chunk_sha, cb.text, cb.meta"
        " FROM docingest.document_chunk_buffer cb"
        " WHERE cb.document_id = %s AND cb.chunker_name = %s AND cb.chunker_version = %s"
        " AND cb.chunk_ord > %s AND NOT EXISTS (SELECT 1 FROM docingest.document_vector_buffer vb"
        "   WHERE vb.chunk_id = cb.chunk_id AND vb.embed_model = %s AND vb.embed_version = %s)"
        " ORDER BY cb.chunker_name, cb.chunker_version, cb.chunk_ord LIMIT %s",
        (document_id, *chunker, after_ord, model, version, limit),
    )
    return [
        ChunkRow(r["chunk_id"], r["chunk_ord"], r["chunk_sha"], r["text"], r["meta"])
        for r in await cur.fetchall()
    ]


#: `insert_vectors`' statement: a request's vectors as arrays, unnested server-side
INSERT_VECTORS = (
    "INSERT INTO docingest.document_vector_buffer (document_id, chunk_id, chunk_sha,"
    " embed_model, embed_version, vector, vector_sha, batch_id)"
    " SELECT %(doc)s, r.chunk_id, r.chunk_sha, %(m)s, %(v)s, r.vector, r.vector_sha, %(batch)s"
    " FROM unnest(%(ids)s::uuid[], %(shas)s::text[], %(vectors)b::halfvec[],"
    " %(vector_shas)s::text[]) AS r(chunk_id, chunk_sha, vector, vector_sha)"
    " ON CONFLICT DO NOTHING"
)


def vector_params(
    document_id: UUID, model: str, version: str, batch_id: UUID, rows: Sequence[VectorRow]
) -> dict[str, Any]:
    """The parameters of `INSERT_VECTORS`."""
    return {
        "doc": document_id,
        "m": model,
        "v": version,
        "batch": batch_id,
        "ids": [r.chunk_id for r in rows],
        "shas": [r.chunk_sha for r in rows],
        "vectors": [HalfVector(r.vector) for r in rows],
        "vector_shas": [r.vector_sha for r in rows],
    }


async def insert_vectors(
    conn: DictConn,
    document_id: UUID,
    model: str,
    version: str,
    batch_id: UUID,
    rows: Sequence[VectorRow],
) -> int:
    """Buffer a request's vectors in one statement (arrays unnested server-side): a row per
    statement cost PostgreSQL and psycopg a parse, bind and execute for each vector. The
    vectors go as a binary `halfvec[]` (`%b`): psycopg would send a list of them as text,
    formatting every float (15-20x slower for 256 vectors of 1,536 dims:
    bench/write_path_cpu.py)."""
    if not rows:
        return 0
    cur = await conn.execute(
        INSERT_VECTORS, vector_params(document_id, model, version, batch_id, rows)
    )
    return max(cur.rowcount, 0)


async def count_vectors(conn: DictConn, document_id: UUID, model: str, version: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM docingest.document_vector_buffer WHERE document_id = %s"
        " AND embed_model = %s AND embed_version = %s",
        (document_id, model, version),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def promote(
    conn: DictConn, document_id: UUID, user_id: UUID, model: str, version: str
) -> tuple[int, int]:
    """Copy the document's buffered chunks + vectors into `document_chunks` (idempotent; the
    caller then clears the buffers with `clear_buffers`). Each chunk's words were parsed for
    search while the document was embedding (`parse_words`, migration 0019); the table's
    trigger adds the owner's lexeme and parses any words still missing, and the word index
    takes the rows into its pending list (migration 0018, see `merge_pending_words`). Returns
    (chunks in buffer, rows now searchable). Run inside the transaction that moves the job
    to `complete`."""
    cur = await conn.execute(
        """
        INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,
            chunker_name, chunker_version, chunk_sha, text, text_tsv, meta, embed_model,
            embed_version, embedding, vector_sha)
        SELECT cb.chunk_id, cb.document_id, %(user)s, cb.chunk_ord, cb.chunker_name,
               cb.chunker_version, cb.chunk_sha, cb.text, cb.text_words, cb.meta,
               vb.embed_model, vb.embed_version, vb.vector, vb.vector_sha
        FROM docingest.document_chunk_buffer cb
        JOIN docingest.document_vector_buffer vb
          ON vb.chunk_id = cb.chunk_id AND vb.embed_model = %(m)s AND vb.embed_version = %(v)s
        WHERE cb.document_id = %(doc)s
        ON CONFLICT DO NOTHING
        """,
        {"user": user_id, "m": model, "v": version, "doc": document_id},
    )
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM docingest.document_chunk_buffer WHERE document_id = %(doc)s) AS buffered,"
        " (SELECT count(*) FROM docingest.document_chunks WHERE document_id = %(doc)s"
        "   AND embed_model = %(m)s AND embed_version = %(v)s) AS searchable",
        {"doc": document_id, "m": model, "v": version},
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["buffered"]), int(row["searchable"])


async def merge_pending_words(conn: DictConn) -> int:
    """Merge the word index's pending list into its tree (migration 0018), after a promotion
    has committed, so no document waits for it. Returns the pages merged, or -1 when another
    merge is running (it, or the next one, takes the rows promoted meanwhile)."""
    cur = await conn.execute("SELECT docingest.merge_pending_words() AS pages")
    row = await cur.fetchone()
    assert row is not None
    return int(row["pages"])


async def clear_buffers(conn: DictConn, document_id: UUID) -> None:
    await conn.execute(
        "DELETE FROM docingest.document_vector_buffer WHERE document_id = %s", (document_id,)
    )
    await conn.execute(
        "DELETE FROM docingest.document_chunk_buffer WHERE document_id = %s", (document_id,)
    )


@dataclass(frozen=True)
class ChunkFingerprint:
    chunk_id: UUID
    chunk_ord: int
    chunk_sha: str
    vector_sha: str  # recomputed from the stored embedding, not read from the column


async def fingerprint(conn: DictConn, document_id: UUID) -> list[ChunkFingerprint]:
    """The document's searchable rows, in chunk order, as what must not change between two
    runs over the same bytes: ids, text hashes and vector hashes. A duplicated row shows up
    as an extra entry; a stored vector that differs shows up in its hash. The determinism
    tests and `docingest validate` compare these lists."""
    cur = await conn.execute(
        "SELECT chunk_id, chunk_ord, chunk_sha, embedding FROM docingest.document_chunks"
        " WHERE document_id = %s ORDER BY chunk_ord, chunk_id",
        (document_id,),
    )
    return [
        ChunkFingerprint(
            r["chunk_id"],
            r["chunk_ord"],
            r["chunk_sha"],
            vector_sha(r["embedding"].to_numpy().astype(np.float32)),
        )
        for r in await cur.fetchall()
    ]
