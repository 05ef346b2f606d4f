"""Search over one user's chunks: vector, lexical (BM25 over Postgres full-text) or both, fused.

Three rankings of the same rows (the caller's chunks embedded with the configured model):

- **vector**: cosine similarity to the question's embedding (`_vector_ranking`, the only piece
  that knows how vectors are stored and indexed);
- **text**: Okapi BM25 over the generated `text_tsv` column (English stemming, stop words
  dropped). Every word of the question may match (an OR of its lexemes: a member's question
  rarely has all its words in one passage); term weights (IDF) and the length norm come from
  the caller's own chunks only, so other users' documents never shift anyone's ranking.
  Chunks that satisfy `websearch_to_tsquery` of the question as typed (all of its words,
  "quoted phrases" in order, -excluded words absent) rank before the others;
- **hybrid** (default): reciprocal rank fusion of the two, score = sum of 1 / (60 + rank) over
  the rankings a chunk appears in (Cormack et al., 2009), each ranking cut at `depth`.

`score` is the mode's own number: cosine similarity, BM25, or the fused RRF score.
Every result names its source for citation: the owner's `filename` (never logged), `pages`
([first, last] page, or null when the parser gave no page numbers), `heading_path` and the
document's `document_kind` ("unknown" where it was not recognised).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import numpy as np
from psycopg import sql

from docingest.store.db import DictConn
from docingest.store.vector_index import supports_filtered_ann

TEXT_SEARCH_CONFIG: Final = "english"  # the config of the generated column (migration 0013)
RRF_K: Final = 60
MIN_FUSION_DEPTH: Final = 50
BM25_K1: Final = 1.2
BM25_B: Final = 0.75


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    TEXT = "text"


def _scope() -> sql.Composable:
    """The rows one search may see: the caller's, embedded with the configured model."""
    return sql.SQL("dc.user_id = %(user)s AND dc.embed_model = %(m)s AND dc.embed_version = %(v)s")


# --------------------------------------------------------------------------- vector


async def _prepare_vector_scan(conn: DictConn) -> bool:
    """Session settings for the vector ranking (inside the search transaction); True when the
    per-model HNSW index may serve it. An HNSW index filters only *after* its candidate list,
    so before pgvector 0.8 a user holding a small share of the rows would silently get fewer
    rows than asked: there the ranking is exact over the user's rows. From 0.8 on, iterative
    scans in strict order keep searching until enough rows pass the filter."""
    if await supports_filtered_ann(conn):
        await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        return True
    return False


def _vector_ranking(dimensions: int, *, use_index: bool) -> sql.Composed:
    """SELECT chunk_id, score, rank: the caller's `%(depth)s` chunks nearest to `%(q)s`."""
    dims = sql.Literal(dimensions)
    distance = sql.SQL("dc.embedding::vector({d}) <=> %(q)s::vector({d})").format(d=dims)
    # `+ 0` turns the ORDER BY into an expression no index serves: exact ranking
    order = distance if use_index else sql.SQL("({}) + 0").format(distance)
    return sql.SQL(
        "SELECT chunk_id, 1 - distance AS score,"
        " row_number() OVER (ORDER BY distance, chunk_id) AS rank"
        " FROM (SELECT dc.chunk_id, {distance} AS distance FROM docingest.document_chunks dc"
        "       WHERE {scope} ORDER BY {order}, dc.chunk_id LIMIT %(depth)s) nearest"
    ).format(distance=distance, scope=_scope(), order=order)


# --------------------------------------------------------------------------- text


def _text_ranking() -> sql.Composed:
    """SELECT chunk_id, score, rank: the caller's `%(depth)s` best BM25 matches of `%(query)s`.

    A lexeme becomes a one-term tsquery through its quoted literal (quotes and backslashes
    escaped), never by re-parsing it with a text search config. Term presence is read from
    `strip(text_tsv)`, computed once per chunk into a materialized CTE: a stored tsvector is
    often TOASTed, and every `@@` on it would fetch and decompress it again. BM25's term
    frequency is taken as presence (1), a fair simplification for chunks of a few hundred
    words; the length norm is the chunk's number of distinct lexemes."""
    cfg = sql.Literal(TEXT_SEARCH_CONFIG)
    return sql.SQL(_TEXT_RANKING).format(
        cfg=cfg, scope=_scope(), k1=sql.Literal(BM25_K1), b=sql.Literal(BM25_B)
    )


_TEXT_RANKING = r"""
WITH terms AS MATERIALIZED (
    SELECT DISTINCT
        ('''' || replace(replace(t.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery AS tq
    FROM unnest(to_tsvector({cfg}::regconfig, %(query)s)) AS t
),
mine AS MATERIALIZED (
    SELECT dc.chunk_id, strip(dc.text_tsv) AS lexemes, length(dc.text_tsv) AS len,
           dc.text_tsv @@ (SELECT websearch_to_tsquery({cfg}::regconfig, %(query)s)) AS every_word
    FROM docingest.document_chunks dc WHERE {scope}
),
corpus AS MATERIALIZED (SELECT count(*) AS n, greatest(avg(len), 1) AS avg_len FROM mine),
weights AS MATERIALIZED (
    SELECT terms.tq, ln(1 + (c.n - d.df + 0.5) / (d.df + 0.5)) AS idf
    FROM terms CROSS JOIN corpus c
    CROSS JOIN LATERAL (SELECT count(*) AS df FROM mine WHERE mine.lexemes @@ terms.tq) d
    WHERE d.df > 0
),
scored AS (
    SELECT mine.chunk_id, mine.every_word,
           sum(w.idf * ({k1} + 1) / (1 + {k1} * (1 - {b} + {b} * mine.len / c.avg_len))) AS bm25
    FROM mine CROSS JOIN corpus c JOIN weights w ON mine.lexemes @@ w.tq
    GROUP BY mine.chunk_id, mine.every_word
)
SELECT chunk_id, bm25 AS score,
       row_number() OVER (ORDER BY every_word DESC, bm25 DESC, chunk_id) AS rank
FROM scored ORDER BY rank LIMIT %(depth)s
"""


# --------------------------------------------------------------------------- fusion


def _fused(vector: sql.Composable, text: sql.Composable) -> sql.Composed:
    """SELECT chunk_id, score: reciprocal rank fusion of the two rankings."""
    return sql.SQL(
        "SELECT coalesce(v.chunk_id, t.chunk_id) AS chunk_id,"
        " coalesce(1.0 / ({k} + v.rank), 0) + coalesce(1.0 / ({k} + t.rank), 0) AS score"
        " FROM ({vector}) v FULL OUTER JOIN ({text}) t ON t.chunk_id = v.chunk_id"
    ).format(k=sql.Literal(RRF_K), vector=vector, text=text)


_RESULTS = sql.SQL(
    """
    SELECT dc.document_id, dc.chunk_id, dc.chunk_ord, dc.text, r.score, d.filename,
           dc.meta->'page_start' AS page_start, dc.meta->'page_end' AS page_end,
           dc.meta->'heading_path' AS heading_path, d.kind
    FROM ({ranking}) r
    JOIN docingest.document_chunks dc
      ON dc.chunk_id = r.chunk_id AND dc.embed_model = %(m)s AND dc.embed_version = %(v)s
    JOIN docingest.documents d ON d.document_id = dc.document_id
    WHERE dc.user_id = %(user)s
    ORDER BY r.score DESC, dc.chunk_id
    LIMIT %(k)s
    """
)


def _pages(start: Any, end: Any) -> list[int] | None:
    if isinstance(start, int) and isinstance(end, int):
        return [start, end]
    return None


def _result(row: dict[str, Any]) -> dict[str, Any]:
    path = row["heading_path"]
    return {
        "document_id": str(row["document_id"]),
        "chunk_id": str(row["chunk_id"]),
        "chunk_ord": row["chunk_ord"],
        "text": row["text"],
        "score": round(float(row["score"]), 6),
        "filename": row["filename"],
        "pages": _pages(row["page_start"], row["page_end"]),
        "heading_path": [str(h) for h in path] if isinstance(path, list) else [],
        "document_kind": row["kind"] or "unknown",
    }


async def search(
    conn: DictConn,
    user_id: UUID,
    *,
    query: str,
    query_vector: np.ndarray | None,
    model: str,
    version: str,
    dimensions: int,
    k: int,
    mode: SearchMode = SearchMode.HYBRID,
) -> list[dict[str, Any]]:
    """The caller's best `k` chunks for `query` (see the module docstring). `query_vector` is
    the query's embedding under (`model`, `version`); unused, and may be None, in text mode."""
    params: dict[str, Any] = {
        "user": user_id,
        "m": model,
        "v": version,
        "k": k,
        "query": query,
        "q": query_vector,
        "depth": k if mode is not SearchMode.HYBRID else max(k, MIN_FUSION_DEPTH),
    }
    if mode is not SearchMode.TEXT and query_vector is None:
        raise ValueError(f"{mode} search needs the query's embedding")
    if query_vector is not None and not np.any(query_vector):
        # a text with no known feature embeds to zeros: no direction, no cosine ranking
        if mode is SearchMode.VECTOR:
            return []
        mode = SearchMode.TEXT
    async with conn.transaction():
        if mode is SearchMode.TEXT:
            ranking: sql.Composable = _text_ranking()
        else:
            vector = _vector_ranking(dimensions, use_index=await _prepare_vector_scan(conn))
            ranking = vector if mode is SearchMode.VECTOR else _fused(vector, _text_ranking())
        cur = await conn.execute(_RESULTS.format(ranking=ranking), params)
        rows = await cur.fetchall()
    return [_result(r) for r in rows]
