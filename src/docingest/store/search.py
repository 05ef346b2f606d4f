"""Search over one user's chunks: vector, lexical (BM25 over Postgres full-text) or both, fused.

Three rankings of the same rows (the caller's chunks embedded with the configured model):

- **vector**: cosine similarity to the question's embedding, by `store/vector_search.rank`
  (exact by default, the bulk-built approximate index when configured: the one piece that
  knows how vectors are stored and indexed);
- **text**: Okapi BM25 over the `text_tsv` column (migrations 0013, 0017; English stemming, stop words
  dropped). Every word of the question may match (an OR of its lexemes, not
  `websearch_to_tsquery`'s AND: a member's question rarely has all its words in one passage);
  term weights (IDF) come from the caller's own chunks only, so other users' documents never
  shift anyone's ranking;
- **hybrid** (default): weighted reciprocal rank fusion of the two (pipeline/rank_fusion.py,
  `FUSION_WEIGHTS`), each ranking cut at max(k, `MIN_FUSION_DEPTH`).

`score` is the mode's own number: cosine similarity, BM25, or the fused RRF score.
Every result names its source for citation: the owner's `filename` (never logged), `pages`
([first, last] page, or null when the parser gave no page numbers), `heading_path` and the
document's `document_kind` ("unknown" where it was not recognised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import numpy as np
import numpy.typing as npt
from psycopg import sql

from docingest.pipeline.rank_fusion import reciprocal_rank_fusion
from docingest.store import vector_search
from docingest.store.db import DictConn
from docingest.store.vector_search import Ranked, Strategy

TEXT_SEARCH_CONFIG: Final = "english"  # the config `text_tsv` is parsed with (migration 0017)
MIN_FUSION_DEPTH: Final = 50
#: weights of the (vector, text) rankings in the fusion: BM25 is the stronger ranking on
#: member questions, the vector ranking adds recall and breaks ties (bench/retrieval_eval.py:
#: on the development questions any vector weight from 0.2 to 0.5 beats 1.0; see
#: docs/benchmarks.md)
FUSION_WEIGHTS: Final = (0.3, 1.0)
BM25_K1: Final = 1.2  # float literals: the ranking is computed in float8, not numeric
BM25_B: Final = 0.75


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    TEXT = "text"


def _scope() -> sql.Composable:
    """The rows one search may see: the caller's, embedded with the configured model."""
    return sql.SQL("dc.user_id = %(user)s AND dc.embed_model = %(m)s AND dc.embed_version = %(v)s")


# --------------------------------------------------------------------------- text


def _text_ranking() -> sql.Composed:
    """SELECT chunk_id, score: the caller's `%(depth)s` best BM25 matches of `%(query)s`.

    Every lexeme of the question (English stemming, stop words dropped) is looked up on its
    own through the GIN index on `text_tsv`, ANDed with the owner's lexeme (migration 0013)
    so the index itself keeps to the caller's rows: the chunks holding it
    and their number (its document frequency, for the IDF) come from the index and the heap
    row alone, so no stored tsvector is read or decompressed, and a chunk that holds none of
    the words costs nothing. A lexeme becomes a one-term tsquery through its quoted literal
    (quotes and backslashes escaped), never by re-parsing it with a text search config.
    BM25's term frequency is taken as presence (1), a fair simplification for chunks of a few
    hundred words; the length norm is the chunk's size in bytes (`octet_length` reads the
    stored size, not the text) against the average of the chunks that hold any of the words.
    The caller's number of chunks is counted from the btree on (user, model, version) alone,
    so the statistics never read a row that holds none of the question's words."""
    cfg = sql.Literal(TEXT_SEARCH_CONFIG)
    return sql.SQL(_TEXT_RANKING).format(
        cfg=cfg, scope=_scope(), k1=sql.Literal(BM25_K1), b=sql.Literal(BM25_B)
    )


_TEXT_RANKING = r"""
WITH terms AS MATERIALIZED (
    SELECT row_number() OVER () AS term,
           ('''' || replace(replace(t.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery
           && ('''user:' || %(user)s::text || '''')::tsquery AS tq
    FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector({cfg}::regconfig, %(query)s))) AS t
),
hits AS MATERIALIZED (
    SELECT terms.term, m.chunk_id, m.len
    FROM terms CROSS JOIN LATERAL (
        SELECT dc.chunk_id, octet_length(dc.text)::float8 AS len
        FROM docingest.document_chunks dc WHERE {scope} AND dc.text_tsv @@ terms.tq
    ) m
),
corpus AS MATERIALIZED (
    SELECT (SELECT count(*) FROM docingest.document_chunks dc WHERE {scope})::float8 AS n,
           greatest((SELECT avg(len) FROM (SELECT DISTINCT chunk_id, len FROM hits) c), 1) AS avg_len
),
weights AS MATERIALIZED (
    SELECT d.term, ln(1 + (c.n - d.df + 0.5) / (d.df + 0.5)) AS idf
    FROM (SELECT term, count(*)::float8 AS df FROM hits GROUP BY term) d CROSS JOIN corpus c
)
SELECT h.chunk_id,
       sum(w.idf * ({k1} + 1) / (1 + {k1} * (1 - {b} + {b} * h.len / c.avg_len))) AS score
FROM hits h JOIN weights w USING (term) CROSS JOIN corpus c
GROUP BY h.chunk_id ORDER BY score DESC, h.chunk_id LIMIT %(depth)s
"""


async def _both(
    vector: Coroutine[Any, Any, list[Ranked]],
    text: Callable[[DictConn], Coroutine[Any, Any, list[tuple[UUID, float]]]],
    conn: DictConn,
    side: DictConn | None,
) -> tuple[list[Ranked], list[tuple[UUID, float]]]:
    """Both rankings: at once when a second connection is at hand, else one after the other."""
    if side is None:
        return await vector, await text(conn)
    async with asyncio.TaskGroup() as group:  # one failing cancels the other
        nearest = group.create_task(vector)
        lexical = group.create_task(text(side))
    return nearest.result(), lexical.result()


_CITED = """
SELECT dc.document_id, dc.chunk_id, dc.chunk_ord, dc.text, d.filename,
       dc.meta->'page_start' AS page_start, dc.meta->'page_end' AS page_end,
       dc.meta->'heading_path' AS heading_path, d.kind
FROM docingest.document_chunks dc JOIN docingest.documents d ON d.document_id = dc.document_id
WHERE dc.chunk_id = ANY(%(ids)s::uuid[]) AND dc.user_id = %(user)s
  AND dc.embed_model = %(m)s AND dc.embed_version = %(v)s
"""


def _pages(start: Any, end: Any) -> list[int] | None:
    if isinstance(start, int) and isinstance(end, int):
        return [start, end]
    return None


def _result(row: dict[str, Any], score: float) -> dict[str, Any]:
    path = row["heading_path"]
    return {
        "document_id": str(row["document_id"]),
        "chunk_id": str(row["chunk_id"]),
        "chunk_ord": row["chunk_ord"],
        "text": row["text"],
        "score": round(score, 6),
        "filename": row["filename"],
        "pages": _pages(row["page_start"], row["page_end"]),
        "heading_path": [str(h) for h in path] if isinstance(path, list) else [],
        "document_kind": row["kind"] or "unknown",
    }


def text_ranking(
    user_id: UUID, query: str, *, model: str, version: str, depth: int
) -> tuple[sql.Composed, dict[str, Any]]:
    """The text ranking's statement and parameters (for `search`, and for EXPLAIN in
    bench/search_latency.py): rows of chunk_id, score, best first, at most `depth`."""
    params = {"user": user_id, "m": model, "v": version, "query": query, "depth": depth}
    return _text_ranking(), params


async def _text_ranked(
    conn: DictConn, user_id: UUID, query: str, *, model: str, version: str, depth: int
) -> list[tuple[UUID, float]]:
    statement, params = text_ranking(user_id, query, model=model, version=version, depth=depth)
    # Planned for these values every time, never prepared: a generic plan (psycopg prepares a
    # statement on its 5th run) cannot see how many rows the user and the words hold, and
    # while the word index has a pending list (migration 0018) it was 4x slower
    # (bench/search_latency.py: p50 59 ms against 14 ms planned per call).
    cur = await conn.execute(statement, params, prepare=False)
    return [(r["chunk_id"], float(r["score"])) for r in await cur.fetchall()]


async def _cited(
    conn: DictConn, params: dict[str, Any], ranked: Sequence[tuple[UUID, float]]
) -> list[dict[str, Any]]:
    """The ranked chunks with the fields a citation needs, in ranking order."""
    if not ranked:
        return []
    cur = await conn.execute(_CITED, {**params, "ids": [cid for cid, _ in ranked]})
    rows = {r["chunk_id"]: r for r in await cur.fetchall()}
    return [_result(rows[cid], score) for cid, score in ranked if cid in rows]


async def search(
    conn: DictConn,
    user_id: UUID,
    *,
    query: str,
    query_vector: npt.ArrayLike | None,
    model: str,
    version: str,
    k: int,
    mode: SearchMode = SearchMode.HYBRID,
    strategy: Strategy = Strategy.EXACT,
    side: DictConn | None = None,
) -> list[dict[str, Any]]:
    """The caller's best `k` chunks for `query` (see the module docstring). `query_vector` is
    the query's embedding under (`model`, `version`); unused, and may be None, in text mode.
    `strategy` is how the vector ranking reads the vectors (store/vector_search.py). `side`:
    a second connection; in hybrid mode the text ranking runs on it while the vector ranking
    runs on `conn` (the two are independent reads; under READ COMMITTED each statement takes
    its own snapshot either way)."""
    if mode is not SearchMode.TEXT and query_vector is None:
        raise ValueError(f"{mode} search needs the query's embedding")
    if query_vector is not None and not np.any(np.asarray(query_vector)):
        # a text with no known feature embeds to zeros: no direction, no cosine ranking
        if mode is SearchMode.VECTOR:
            return []
        mode = SearchMode.TEXT
    depth = max(k, MIN_FUSION_DEPTH) if mode is SearchMode.HYBRID else k
    params: dict[str, Any] = {"user": user_id, "m": model, "v": version}
    async with conn.transaction():
        if mode is SearchMode.TEXT:
            ranked = await _text_ranked(
                conn, user_id, query, model=model, version=version, depth=depth
            )
        else:
            assert query_vector is not None
            vector = vector_search.rank(
                conn, user_id, query_vector, model=model, version=version, k=depth,
                strategy=strategy,
            )  # fmt: skip
            if mode is SearchMode.HYBRID:
                nearest, text = await _both(
                    vector,
                    lambda c: _text_ranked(
                        c, user_id, query, model=model, version=version, depth=depth
                    ),
                    conn,
                    side,
                )
                ranked = reciprocal_rank_fusion(
                    [[r.chunk_id for r in nearest], [cid for cid, _ in text]], FUSION_WEIGHTS
                )
            else:
                ranked = [(r.chunk_id, r.score) for r in await vector]
        return await _cited(conn, params, ranked[:k])
