"""Vector search on a real pgvector: exact per-user ranking by default (recall 1.0 against
numpy brute force), tenant scoping, halfvec up to 4,000 dimensions, and the optional approximate
index built in bulk (partial: rows promoted after its build never enter it, and are still
found)."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from docingest.pipeline.stored_vector import as_stored
from docingest.store import vector_index, vector_search
from docingest.store.db import open_pool
from docingest.store.search import SearchMode, search
from docingest.store.vector_search import Strategy, brute_force, rank

MODEL, VERSION, DIMS = "test-model", "d64", 64


def _insert(
    dsn: str, user: uuid.UUID, vectors: np.ndarray, model: str = MODEL, version: str = VERSION
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in vectors]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        doc = uuid.uuid4()
        conn.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len, file_sha256, raw_path)"
            " VALUES (%s, %s, 'x.pdf', 1, %s, 'raw/x')",
            (doc, user, f"{doc.int:064x}"[-64:]),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord, chunker_name,"
                " chunker_version, chunk_sha, text, embed_model, embed_version, embedding, vector_sha)"
                " VALUES (%s, %s, %s, %s, 'markdown-simple', '1', 's', %s, %s, %s, %s, 'v')",
                [
                    (cid, doc, user, i, f"chunk {i}", model, version, HalfVector(v))
                    for i, (cid, v) in enumerate(zip(ids, vectors, strict=True))
                ],
            )
    return ids


async def test_small_tenant_gets_k_exact_results_beside_a_large_one(dsn: str) -> None:
    rng = np.random.default_rng(3)
    small, large = uuid.uuid4(), uuid.uuid4()
    _insert(dsn, large, rng.standard_normal((600, DIMS)).astype(np.float32))
    mine = rng.standard_normal((3, DIMS)).astype(np.float32)
    _insert(dsn, small, mine)
    query = mine[1] + 0.01 * rng.standard_normal(DIMS).astype(np.float32)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        vector = {"query": "chunk", "query_vector": query, "model": MODEL, "version": VERSION}
        results = await search(conn, small, **vector, k=3, mode=SearchMode.VECTOR)
        everyone_else = await search(conn, large, **vector, k=5, mode=SearchMode.VECTOR)
    assert len(results) == 3
    assert results[0]["text"] == "chunk 1" and results[0]["score"] > 0.99
    stored, q = as_stored_rows(mine), as_stored(query)
    expected = sorted(
        (float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))) for v in stored), reverse=True
    )
    assert np.allclose([r["score"] for r in results], expected, atol=1e-5)
    assert len(everyone_else) == 5 and all(
        r["text"] != "chunk 1" or r["score"] < 0.99 for r in everyone_else
    )


def as_stored_rows(rows: np.ndarray) -> np.ndarray:
    return np.stack([as_stored(r) for r in rows])


async def test_exact_ranking_is_brute_force_over_the_stored_vectors(dsn: str) -> None:
    rng = np.random.default_rng(11)
    user = uuid.uuid4()
    vectors = rng.standard_normal((400, DIMS)).astype(np.float32)
    ids = _insert(dsn, user, vectors)
    _insert(dsn, uuid.uuid4(), rng.standard_normal((400, DIMS)).astype(np.float32))
    stored = as_stored_rows(vectors)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        for _ in range(10):
            query = rng.standard_normal(DIMS).astype(np.float32)
            got = await rank(conn, user, query, model=MODEL, version=VERSION, k=10)
            assert [r.chunk_id for r in got] == [ids[i] for i in brute_force(stored, query, 10)]


async def test_3072_dimensions_store_search_and_index_as_halfvec(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """text-embedding-3-large's 3,072 dimensions: over `vector`'s 2,000-dim index limit,
    within `halfvec`'s 4,000."""
    monkeypatch.setattr(vector_search, "INDEX_MIN_ROWS", 0)  # a small user takes the index
    rng = np.random.default_rng(5)
    user, version = uuid.uuid4(), "d3072"
    vectors = rng.standard_normal((30, 3072)).astype(np.float32)
    ids = _insert(dsn, user, vectors, "text-embedding-3-large", version)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        got = await rank(
            conn, user, vectors[7], model="text-embedding-3-large", version=version, k=3
        )
        assert got[0].chunk_id == ids[7] and got[0].score > 0.999
        built = vector_index.build(dsn, "text-embedding-3-large", version, 3072)
        assert built.dimensions == 3072
        with_index = await rank(
            conn,
            user,
            vectors[7],
            model="text-embedding-3-large",
            version=version,
            k=3,
            strategy=Strategy.INDEX,
        )
    assert with_index[0].chunk_id == ids[7]


def _index_pages(dsn: str, name: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
            (f"docingest.{name}",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_bulk_built_index_is_never_maintained_and_newer_rows_are_still_found(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vector_search, "INDEX_MIN_ROWS", 0)  # a small user takes the index
    rng = np.random.default_rng(21)
    user = uuid.uuid4()
    before = rng.standard_normal((300, DIMS)).astype(np.float32)
    ids_before = _insert(dsn, user, before)
    _insert(dsn, uuid.uuid4(), rng.standard_normal((900, DIMS)).astype(np.float32))
    built = vector_index.build(dsn, MODEL, VERSION, DIMS)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (built.name,)
        ).fetchone()
    assert row is not None
    assert "USING hnsw" in row[0] and "created_at <=" in row[0] and MODEL in row[0]
    pages = _index_pages(dsn, built.name)

    after = rng.standard_normal((200, DIMS)).astype(np.float32)
    ids_after = _insert(dsn, user, after)  # promoted after the build
    assert _index_pages(dsn, built.name) == pages  # not one row entered the index

    everything, ids = np.vstack([before, after]), ids_before + ids_after
    stored = as_stored_rows(everything)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        assert await vector_index.current(conn, MODEL, VERSION) == built
        hits = total = 0
        for i in range(20):
            query = everything[i * 23] + 0.1 * rng.standard_normal(DIMS).astype(np.float32)
            got = await rank(
                conn, user, query, model=MODEL, version=VERSION, k=10, strategy=Strategy.INDEX
            )
            assert len(got) == 10
            truth = {ids[j] for j in brute_force(stored, query, 10)}
            hits += len(truth & {r.chunk_id for r in got})
            total += 10
            if i * 23 >= len(before):  # a row newer than the index is found exactly
                assert got[0].chunk_id == ids[i * 23]
    assert hits / total >= 0.95

    rebuilt = vector_index.build(dsn, MODEL, VERSION, DIMS)  # moves the watermark
    assert rebuilt.name != built.name and rebuilt.covers_until > built.covers_until
    with psycopg.connect(dsn) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()}
    assert rebuilt.name in names and built.name not in names
    assert vector_index.drop(dsn, MODEL, VERSION)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        assert await vector_index.current(conn, MODEL, VERSION) is None
        exact = await rank(conn, user, after[0], model=MODEL, version=VERSION, k=1)
    assert exact[0].chunk_id == ids_after[0]


async def test_index_mode_ranks_a_user_below_the_crossover_exactly(dsn: str) -> None:
    rng = np.random.default_rng(8)
    user = uuid.uuid4()
    vectors = rng.standard_normal((200, DIMS)).astype(np.float32)
    ids = _insert(dsn, user, vectors)
    _insert(dsn, uuid.uuid4(), rng.standard_normal((800, DIMS)).astype(np.float32))
    vector_index.build(dsn, MODEL, VERSION, DIMS)
    stored = as_stored_rows(vectors)
    async with await open_pool(dsn) as pool, pool.connection() as conn:
        for _ in range(5):
            query = rng.standard_normal(DIMS).astype(np.float32)
            got = await rank(
                conn, user, query, model=MODEL, version=VERSION, k=10, strategy=Strategy.INDEX
            )
            assert [r.chunk_id for r in got] == [ids[i] for i in brute_force(stored, query, 10)]
