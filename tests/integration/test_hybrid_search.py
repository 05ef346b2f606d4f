"""Hybrid, vector and text search on a real Postgres: BM25 over the generated tsvector, RRF
fusion, per-user statistics, citable fields; the API's mode field; the worker's page and kind
records on a real document."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from docingest.bootstrap import Runtime
from docingest.pipeline.rank_fusion import RRF_K
from docingest.store.db import open_pool, spare_connection
from docingest.store.search import FUSION_WEIGHTS, SearchMode, search
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import auth, upload

MODEL, VERSION, DIMS = "test-model", "d8", 8

CHUNKS = [  # (text, page_start, page_end, heading_path)
    ("Ozempic and Mounjaro are preferred brands for type 2 diabetes.", 12, 12, ["Drug list"]),
    ("Your plan pays for hearing aids once every three years.", 40, 41, ["Chapter 4", "Hearing"]),
    ("Physical therapy is limited to 35 visits per year.", None, None, []),
    ("Members pay a $45 copay for a specialist visit.", 3, 3, ["Benefits"]),
]


def _unit(i: int) -> np.ndarray:
    v = np.zeros(DIMS, dtype=np.float32)
    v[i] = 1.0
    return v


def _insert(dsn: str, user: uuid.UUID, rows: list[tuple[Any, ...]], kind: str | None) -> list[str]:
    doc = uuid.uuid4()
    ids = [str(uuid.uuid4()) for _ in rows]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
            " file_sha256, raw_path, kind) VALUES (%s, %s, 'my plan.pdf', 1, %s, 'raw/x', %s)",
            (doc, user, f"{doc.int:064x}"[-64:], kind),
        )
        for i, ((text, start, end, path), cid) in enumerate(zip(rows, ids, strict=True)):
            meta = psycopg.types.json.Jsonb(
                {"page_start": start, "page_end": end, "heading_path": path}
            )
            conn.execute(
                "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,"
                " chunker_name, chunker_version, chunk_sha, text, meta, embed_model, embed_version,"
                " embedding, vector_sha) VALUES (%s, %s, %s, %s, 'markdown-simple', '1', 's', %s,"
                " %s, %s, %s, %s, 'v')",
                (cid, doc, user, i, text, meta, MODEL, VERSION, _unit(i % DIMS)),
            )
    return ids


async def _search(
    dsn: str, user: uuid.UUID, query: str, mode: SearchMode, q: np.ndarray, k: int = 3
) -> Any:
    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        return await search(
            conn,
            user,
            query=query,
            query_vector=q,
            model=MODEL,
            version=VERSION,
            k=k,
            mode=mode,
        )


async def test_text_mode_ranks_exact_terms_and_cites_the_source(dsn: str) -> None:
    user = uuid.uuid4()
    ids = _insert(dsn, user, CHUNKS, "formulary")
    found = await _search(dsn, user, "is ozempic covered?", SearchMode.TEXT, _unit(3))
    assert [r["chunk_id"] for r in found] == [ids[0]]  # the only chunk with the word
    top = found[0]
    assert top["filename"] == "my plan.pdf" and top["document_kind"] == "formulary"
    assert top["pages"] == [12, 12] and top["heading_path"] == ["Drug list"]
    therapy = await _search(dsn, user, "physical therapy visits", SearchMode.TEXT, _unit(0))
    assert therapy[0]["chunk_id"] == ids[2] and therapy[0]["pages"] is None  # no page numbers
    assert await _search(dsn, user, "how is it for you", SearchMode.TEXT, _unit(0)) == []
    # the owner's lexeme in text_tsv (migration 0013) cannot be asked for: the parser splits it
    assert await _search(dsn, user, f"user:{user}", SearchMode.TEXT, _unit(0)) == []


async def test_rows_waiting_in_the_pending_list_are_found_as_merged_ones(dsn: str) -> None:
    """Migration 0018: promoted rows wait in the word index's pending list until a worker merges
    it (as the least-privileged worker role). A search finds them the same before and after;
    one merge runs at a time, a second caller skips."""
    user = uuid.uuid4()
    ids = _insert(dsn, user, CHUNKS, None)
    pending = await _search(dsn, user, "specialist copay", SearchMode.TEXT, _unit(0))
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn) as other:
        other.execute("SELECT pg_advisory_xact_lock(1820991088, 0)")  # a merge in progress
        conn.execute("SET ROLE docingest_worker")
        merge = "SELECT docingest.merge_pending_words()"
        assert conn.execute(merge).fetchone() == (-1,)
        other.rollback()
        assert (conn.execute(merge).fetchone() or (0,))[0] > 0  # the pages it merged
        assert conn.execute(merge).fetchone() == (0,)  # nothing left pending
    merged = await _search(dsn, user, "specialist copay", SearchMode.TEXT, _unit(0))
    assert merged == pending and [r["chunk_id"] for r in merged] == [ids[3]]


async def test_term_weights_come_from_the_callers_rows_only(dsn: str) -> None:
    """Another user's documents change neither what I find nor its score (no leak by IDF)."""
    me, other = uuid.uuid4(), uuid.uuid4()
    _insert(dsn, me, CHUNKS, None)
    before = await _search(dsn, me, "hearing aids copay", SearchMode.TEXT, _unit(0))
    _insert(dsn, other, [("hearing aids hearing aids", 1, 1, [])] * 30, None)
    after = await _search(dsn, me, "hearing aids copay", SearchMode.TEXT, _unit(0))
    assert after == before and before[0]["document_kind"] == "unknown"
    theirs = await _search(dsn, other, "hearing aids copay", SearchMode.HYBRID, _unit(1))
    assert {r["chunk_id"] for r in theirs}.isdisjoint({r["chunk_id"] for r in before})


async def test_hybrid_fuses_both_rankings_by_reciprocal_rank(dsn: str) -> None:
    user = uuid.uuid4()
    ids = _insert(dsn, user, CHUNKS, None)
    # the vector points at the specialist chunk, the words at the hearing chunk
    query, vector = "hearing aids", _unit(3)
    vec = await _search(dsn, user, query, SearchMode.VECTOR, vector, k=10)  # all of them
    text = await _search(dsn, user, query, SearchMode.TEXT, vector)
    fused = await _search(dsn, user, query, SearchMode.HYBRID, vector)
    assert vec[0]["chunk_id"] == ids[3] and vec[0]["score"] > 0.999
    assert [r["chunk_id"] for r in text] == [ids[1]]
    by_id = {r["chunk_id"]: r["score"] for r in fused}
    # the hearing chunk: 1st in text and 2nd-or-later in vector; the specialist chunk: 1st in
    # vector only. Each scores exactly its weighted reciprocal-rank sum; agreement wins.
    assert ids[1] in by_id and ids[3] in by_id
    w_vector, w_text = FUSION_WEIGHTS
    vec_rank = {r["chunk_id"]: i for i, r in enumerate(vec, start=1)}
    expected_hearing = w_text / (RRF_K + 1) + w_vector / (RRF_K + vec_rank[ids[1]])
    assert np.isclose(by_id[ids[1]], expected_hearing, atol=1e-6)
    assert np.isclose(by_id[ids[3]], w_vector / (RRF_K + 1), atol=1e-6)
    assert fused[0]["chunk_id"] == ids[1]


async def test_hybrid_on_a_spare_connection_ranks_the_same(dsn: str) -> None:
    """The two rankings at once (text on a second, idle connection) give what they give one
    after the other; a pool with no idle connection offers none and nothing waits for it."""
    user = uuid.uuid4()
    _insert(dsn, user, CHUNKS, None)
    alone = await _search(dsn, user, "hearing aids copay", SearchMode.HYBRID, _unit(3), k=4)
    async with (
        await open_pool(dsn, min_size=2, max_size=2) as pool,
        pool.connection() as conn,
        spare_connection(pool) as side,
    ):
        assert side is not None
        both = await search(
            conn, user, query="hearing aids copay", query_vector=_unit(3), model=MODEL,
            version=VERSION, k=4, mode=SearchMode.HYBRID, side=side,
        )  # fmt: skip
        async with spare_connection(pool) as none_left:
            assert none_left is None
    assert both == alone and len(both) == 4


async def test_words_are_kept_for_every_way_a_row_arrives(dsn: str) -> None:
    """Migration 0017: inserted without words (as the 001 migration does) they are parsed;
    with words (as a promotion or a restore brings them) they are kept; a changed text is
    parsed again; the owner's lexeme is always there, once."""
    user = uuid.uuid4()
    ids = _insert(dsn, user, CHUNKS, None)
    expected = (
        "SELECT text_tsv = to_tsvector('english', text)"
        " || array_to_tsvector(ARRAY['user:' || user_id::text]) FROM docingest.document_chunks"
        " WHERE chunk_id = %s"
    )
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute(expected, (ids[0],)).fetchone() == (True,)
        c.execute(
            "UPDATE docingest.document_chunks SET text = 'orthodontics for adults'"
            " WHERE chunk_id = %s",
            (ids[0],),
        )
        assert c.execute(expected, (ids[0],)).fetchone() == (True,)
        # a restore writes every column back as it was, the owner's lexeme included
        c.execute(
            "CREATE TEMP TABLE saved AS SELECT * FROM docingest.document_chunks"
            " WHERE chunk_id = %s",
            (ids[0],),
        )
        c.execute("DELETE FROM docingest.document_chunks WHERE chunk_id = %s", (ids[0],))
        c.execute("INSERT INTO docingest.document_chunks SELECT * FROM saved")
        assert c.execute(expected, (ids[0],)).fetchone() == (True,)
    found = await _search(dsn, user, "orthodontics", SearchMode.TEXT, _unit(0))
    assert [r["chunk_id"] for r in found] == [ids[0]]
    assert await _search(dsn, user, "ozempic", SearchMode.TEXT, _unit(0)) == []


async def test_a_query_vector_of_zeros_falls_back_to_words(dsn: str) -> None:
    user = uuid.uuid4()
    ids = _insert(dsn, user, CHUNKS, None)
    zeros = np.zeros(DIMS, dtype=np.float32)
    assert await _search(dsn, user, "hearing", SearchMode.VECTOR, zeros) == []
    found = await _search(dsn, user, "hearing", SearchMode.HYBRID, zeros)
    assert [r["chunk_id"] for r in found] == [ids[1]]


async def test_api_modes_strict_and_a_real_document_cited(
    client: httpx.AsyncClient, rt: Runtime, dsn: str
) -> None:
    """End to end on the default embedder: the worker records pages and the document kind."""
    alice = uuid.uuid4()
    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        await upload(conn, rt, alice, EXAMPLES / "glossary_cms_uniform_health_coverage.pdf")
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    headers = auth(rt, alice)
    for mode in ("hybrid", "vector", "text"):
        r = await client.post(
            "/v1/search", headers=headers, json={"query": "balance billing", "k": 3, "mode": mode}
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results and all(x["document_kind"] == "glossary" for x in results)
        assert all(x["filename"] == "glossary_cms_uniform_health_coverage.pdf" for x in results)
        assert all(1 <= x["pages"][0] <= x["pages"][1] <= 6 for x in results)
    text = (
        await client.post(
            "/v1/search", headers=headers, json={"query": "balance billing", "mode": "text"}
        )
    ).json()["results"]
    assert "Balance Billing" in text[0]["heading_path"] and "balance" in text[0]["text"].lower()
    for bad in ("TEXT", "semantic", 1, True, None, ["text"]):
        refused = await client.post(
            "/v1/search", headers=headers, json={"query": "x", "k": 3, "mode": bad}
        )
        assert refused.status_code == 422, bad
    with psycopg.connect(dsn) as conn:
        modes = conn.execute(
            "SELECT detail->>'mode' FROM docingest.events WHERE action = 'search' ORDER BY event_id"
        ).fetchall()
    assert [m[0] for m in modes] == ["hybrid", "vector", "text", "text"]
