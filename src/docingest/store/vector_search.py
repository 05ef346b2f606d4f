"""Vector ranking within one user's chunks: the vector half of search.

Exact by default: the user's rows of the model (btree on user, model, version) are all ranked
by cosine distance, so recall is 1.0 and a user with few rows among many never gets fewer than
k results. With `Strategy.INDEX`, an approximate index built (store/vector_index.py) and a user
holding at least `INDEX_MIN_ROWS` chunks, the rows it covers are searched through HNSW with
pgvector 0.8's iterative scan (it keeps scanning until k rows pass the user filter) and the
rows promoted since its build are ranked exactly; the two lists are merged. Otherwise INDEX
ranks exactly too.

`rank` returns chunk ids and scores only, so other rankings (full text, fusion) can combine it;
store/search.py adds the fields of the API's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import numpy as np
import numpy.typing as npt
from pgvector import HalfVector
from psycopg import sql

from docingest.pipeline.stored_vector import as_stored
from docingest.store import vector_index
from docingest.store.db import DictConn

#: HNSW candidate list per scan step; with iterative scans it bounds work per step, not recall
EF_SEARCH = 100
#: how many index tuples one iterative scan may visit before giving up (pgvector's default)
MAX_SCAN_TUPLES = 20_000
#: below this many chunks a user's rows are ranked exactly even in INDEX mode: exact costs
#: ~2 us per chunk, an HNSW scan with a per-user filter 9-15 ms and, for a user holding a small
#: share of the rows, lower recall (bench/search_latency.py; docs/decisions.md "Crossover")
INDEX_MIN_ROWS = 10_000


class Strategy(StrEnum):
    EXACT = "exact"
    INDEX = "index"


@dataclass(frozen=True)
class Ranked:
    chunk_id: UUID
    score: float  # cosine similarity, 1 = same direction


_USER_ROWS = "user_id = %(user)s AND embed_model = %(m)s AND embed_version = %(v)s"


async def rank(
    conn: DictConn,
    user_id: UUID,
    query_vector: npt.ArrayLike,
    *,
    model: str,
    version: str,
    k: int,
    strategy: Strategy = Strategy.EXACT,
) -> list[Ranked]:
    """The user's k chunks closest to `query_vector` (cosine), best first; ties by chunk id."""
    params = {
        "q": HalfVector(as_stored(query_vector)),
        "user": user_id,
        "m": model,
        "v": version,
        "k": k,
    }
    exact = sql.SQL(
        "SELECT chunk_id, embedding <=> %(q)s AS distance FROM docingest.document_chunks"
        " WHERE " + _USER_ROWS + "{newer} ORDER BY distance, chunk_id LIMIT %(k)s"
    )
    async with conn.transaction():
        index = (
            await vector_index.current(conn, model, version) if strategy is Strategy.INDEX else None
        )
        if index is not None and await _rows_below(conn, params, INDEX_MIN_ROWS):
            index = None
        if index is None:
            query: sql.Composed = exact.format(newer=sql.SQL(""))
        else:
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(EF_SEARCH))
            await conn.execute(
                sql.SQL("SET LOCAL hnsw.max_scan_tuples = {}").format(MAX_SCAN_TUPLES)
            )
            # INDEX means the index: for a user owning a large share of the rows the planner
            # would rather read all of them (exact, and slow at that size). The user filter of
            # the approximate part is written so no btree can serve it (`_with_index`), and
            # scans that read every row are off.
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            await conn.execute("SET LOCAL enable_seqscan = off")
            query = _with_index(index, exact)
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
    return [Ranked(r["chunk_id"], 1.0 - float(r["distance"])) for r in rows]


async def _rows_below(conn: DictConn, params: dict[str, object], limit: int) -> bool:
    """Whether the user has fewer than `limit` rows of the model (counts at most `limit`)."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM (SELECT 1 FROM docingest.document_chunks WHERE "
        + _USER_ROWS
        + " LIMIT %(limit)s) AS capped",
        {**params, "limit": limit},
    )
    row = await cur.fetchone()
    return row is not None and int(row["n"]) < limit


def _with_index(index: vector_index.VectorIndex, exact: sql.SQL) -> sql.Composed:
    """HNSW over the rows the index covers + exact over the rows promoted since, merged.
    Model, version and watermark are literals: a partial index is only chosen when the
    planner can prove its predicate from the query, which it cannot from parameters of a
    generic plan."""
    dims = sql.Literal(index.dimensions)
    covered = sql.SQL("embed_model = {m} AND embed_version = {v} AND created_at <= {w}").format(
        m=sql.Literal(index.model),
        v=sql.Literal(index.version),
        w=sql.Literal(index.covers_until),
    )
    approximate = sql.SQL(
        "SELECT chunk_id, embedding::halfvec({d}) <=> %(q)s::halfvec({d}) AS distance"
        " FROM docingest.document_chunks WHERE {covered} AND (user_id = %(user)s) IS TRUE"
        " ORDER BY embedding::halfvec({d}) <=> %(q)s::halfvec({d}) LIMIT %(k)s"
    ).format(d=dims, covered=covered)
    newer = exact.format(
        newer=sql.SQL(" AND created_at > {w}").format(w=sql.Literal(index.covers_until))
    )
    return sql.SQL(
        "SELECT chunk_id, distance FROM (({approximate}) UNION ALL ({newer})) AS both_parts"
        " ORDER BY distance, chunk_id LIMIT %(k)s"
    ).format(approximate=approximate, newer=newer)


def brute_force(stored: npt.NDArray[np.float32], query_vector: npt.ArrayLike, k: int) -> list[int]:
    """Row positions of the k rows of `stored` closest to the query by cosine, computed in
    numpy over the same float16-rounded values the database holds: the reference the
    search tests and bench/search_latency.py check `rank` against."""
    q = as_stored(query_vector).astype(np.float64)
    m = stored.astype(np.float64)
    sims = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]
