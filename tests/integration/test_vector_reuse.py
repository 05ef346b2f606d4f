"""Vector reuse by text stays linear when thousands of chunks share one text (issue 11: two
documents of 20,000 identical chunks sat in one reuse statement for 947 s).

Each case runs the reuse statement under a statement_timeout far above what a linear plan
needs (tens of milliseconds here) and far below what a quadratic plan needs at this size
(every chunk of the text probed for every chunk asking: 4,000 x 4,000 probes, minutes), so a
plan that walks the shared text's chunks once per chunk fails the test instead of hanging it.
Memoize is switched off: PostgreSQL may cache a per-text lookup when its statistics say texts
repeat, and did not when they said otherwise (the incident); the statement must be linear
without that help. (The pre-fix statement passes with Memoize and times out without it.)"""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
from pgvector import HalfVector

from docingest.pipeline import hashing
from docingest.pipeline.stored_vector import as_stored
from docingest.store import chunks
from docingest.store.db import open_pool

MODEL, VERSION = "m", "v"
N = 4000
TIMEOUT = "3s"
TEXT = "The same boilerplate paragraph, repeated on every page."
SHA = hashing.chunk_sha(TEXT)


def _document(
    conn: psycopg.Connection, n: int, *, with_vectors: slice = slice(0)
) -> list[uuid.UUID]:
    """A document whose n chunks all carry TEXT; the chunks in `with_vectors` have a vector."""
    doc = uuid.uuid4()
    conn.execute(
        "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
        " file_sha256, raw_path) VALUES (%s, %s, 'x.pdf', 1, %s, 'raw/x')",
        (doc, uuid.uuid4(), hashing.sha256_hex(doc.bytes)),
    )
    ids = [uuid.uuid4() for _ in range(n)]
    with conn.cursor().copy(
        "COPY docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord, chunker_name,"
        " chunker_version, chunk_sha, text) FROM STDIN"
    ) as copy:
        for i, cid in enumerate(ids):
            copy.write_row((cid, doc, i, "markdown-simple", "1", SHA, TEXT))
    vector = as_stored(np.random.default_rng(0).standard_normal(64))
    with conn.cursor().copy(
        "COPY docingest.document_vector_buffer (document_id, chunk_id, chunk_sha, embed_model,"
        " embed_version, vector, vector_sha, batch_id) FROM STDIN"
    ) as copy:
        copy.set_types(["uuid", "uuid", "text", "text", "text", "text", "text", "uuid"])
        text_vector = HalfVector(vector).to_text()
        for cid in ids[with_vectors]:
            copy.write_row(
                (doc, cid, SHA, MODEL, VERSION, text_vector, hashing.vector_sha(vector), doc)
            )
    conn.execute("ANALYZE docingest.document_chunk_buffer, docingest.document_vector_buffer")
    return [doc, *ids]


async def _reuse(dsn: str, doc: uuid.UUID, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    pool = await open_pool(dsn, max_size=1)
    async with pool, pool.connection() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = '{TIMEOUT}'")
        await conn.execute("SET LOCAL enable_memoize = off")
        return await chunks.reuse_vectors(conn, doc, MODEL, VERSION, uuid.uuid4(), ids)


async def test_another_documents_buffered_vector_is_reused_by_thousands_of_chunks(
    dsn: str,
) -> None:
    """The reported case: one document's vectors are still buffered (not promoted), and the
    other document's chunks of the same text all ask at once. The asking document was
    written first, so its vectorless chunks come first among the text's chunks."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        doc, *ids = _document(conn, N)
        _document(conn, N, with_vectors=slice(None))
    reused = await _reuse(dsn, doc, ids)
    assert reused == set(ids)


async def test_a_documents_own_first_window_feeds_the_rest_of_its_copies(dsn: str) -> None:
    """One document of thousands of copies: one window paid for the text (here its last, so
    every vectorless copy comes before the paid ones), every other window copies it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        doc, *ids = _document(conn, N, with_vectors=slice(N - 256, N))
    window = ids[:256]
    assert await _reuse(dsn, doc, window) == set(window)
    rest = ids[256 : N - 256]
    assert await _reuse(dsn, doc, rest) == set(rest)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT vector_sha) FROM docingest.document_vector_buffer"
            " WHERE document_id = %s",
            (doc,),
        ).fetchone()
    assert row == (N, 1)


async def test_a_promoted_vector_is_reused_and_chunks_without_one_are_left_alone(
    dsn: str,
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        source, *source_ids = _document(conn, 3, with_vectors=slice(None))
        conn.execute(
            "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text, embed_model, embed_version,"
            " embedding, vector_sha)"
            " SELECT cb.chunk_id, cb.document_id, gen_random_uuid(), cb.chunk_ord, cb.chunker_name,"
            " cb.chunker_version, cb.chunk_sha, cb.text, vb.embed_model, vb.embed_version,"
            " vb.vector, vb.vector_sha FROM docingest.document_chunk_buffer cb"
            " JOIN docingest.document_vector_buffer vb USING (chunk_id) WHERE cb.document_id = %s",
            (source,),
        )
        conn.execute(
            "DELETE FROM docingest.document_chunk_buffer WHERE document_id = %s", (source,)
        )
        doc, *ids = _document(conn, N)
        other = uuid.uuid4()
        conn.execute(
            "INSERT INTO docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text) VALUES (%s, %s, %s,"
            " 'markdown-simple', '1', %s, 'never embedded')",
            (other, doc, N, hashing.chunk_sha("never embedded")),
        )
    reused = await _reuse(dsn, doc, [*ids, other])
    assert reused == set(ids)  # the text nobody embedded gets nothing
    assert source_ids  # the promoted rows were the only source
