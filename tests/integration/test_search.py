"""Search ranking and tenant scoping on a real pgvector, with the per-model HNSW index present."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from docingest.store.db import open_pool
from docingest.store.search import SearchMode, search
from docingest.store.vector_index import ensure_vector_index, index_name

MODEL, VERSION, DIMS = "test-model", "d64", 64


def _insert(dsn: str, user: uuid.UUID, vectors: np.ndarray) -> None:
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
                    (uuid.uuid4(), doc, user, i, f"chunk {i}", MODEL, VERSION, v)
                    for i, v in enumerate(vectors)
                ],
            )


async def test_small_tenant_gets_k_exact_results_beside_a_large_one(dsn: str) -> None:
    rng = np.random.default_rng(3)
    small, large = uuid.uuid4(), uuid.uuid4()
    _insert(dsn, large, rng.standard_normal((600, DIMS)).astype(np.float32))
    mine = rng.standard_normal((3, DIMS)).astype(np.float32)
    _insert(dsn, small, mine)
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            name = await ensure_vector_index(conn, MODEL, VERSION, DIMS)
            assert name == index_name(MODEL, VERSION)
            cur = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)
            )
            row = await cur.fetchone()
            assert row is not None and "USING hnsw" in row["indexdef"] and MODEL in row["indexdef"]
            query = mine[1] + 0.01 * rng.standard_normal(DIMS).astype(np.float32)
            common = {"query": "chunk", "query_vector": query, "model": MODEL, "version": VERSION}
            vector = {**common, "dimensions": DIMS, "mode": SearchMode.VECTOR}
            results = await search(conn, small, **vector, k=3)
            everyone_else = await search(conn, large, **vector, k=5)
    finally:
        await pool.close()
    assert len(results) == 3  # post-filtered ANN would find at most a couple of the 3 among 603
    assert results[0]["text"] == "chunk 1" and results[0]["score"] > 0.99
    expected = sorted(
        (float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query))) for v in mine), reverse=True
    )
    assert np.allclose([r["score"] for r in results], expected, atol=1e-5)
    assert len(everyone_else) == 5 and all(
        r["text"] != "chunk 1" or r["score"] < 0.99 for r in everyone_else
    )
