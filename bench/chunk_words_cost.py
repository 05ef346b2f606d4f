"""What a chunk's words for text search cost Postgres, and where the worker pays for them.

The 1,800-chunk document of `bench/embed_throughput.py` is chunked as the worker does and its
rows are written to `document_chunk_buffer` on a scratch embedded PostgreSQL three ways:
- with the words parsed in the insert (what the generated column of migration 0017 did, in
  the chunking stage);
- without them (the chunking stage since migration 0019);
- then the words parsed window by window, 256 chunks per statement, as the embedding stage now
  does (`store/chunks.py` `parse_words`) while the window's requests are out.
Rerun: `.venv/bin/python bench/chunk_words_cost.py [--chunks 1800] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import scratch_database
from bench.embed_throughput import document
from docingest.pipeline import chunker, hashing, ids
from docingest.pipeline.tokens import CL100K, count_tokens

COLUMNS = "chunk_id, document_id, chunk_ord, chunker_name, chunker_version, chunk_sha, text, meta"
WINDOW = 256


def new_document(conn: psycopg.Connection[tuple[object, ...]]) -> uuid.UUID:
    doc = uuid.uuid4()
    conn.execute(
        "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
        " file_sha256, raw_path) VALUES (%s, %s, 'bench.pdf', 1, %s, 'raw/bench')",
        (doc, uuid.uuid4(), hashing.sha256_hex(doc.bytes)),
    )
    return doc


def rows(doc: uuid.UUID, chunks: list[chunker.Chunk]) -> list[tuple[object, ...]]:
    name, version = chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION
    return [
        (ids.chunk_id(doc, name, version, c.ord), doc, c.ord, name, version,
         hashing.chunk_sha(c.text), c.text, Jsonb(c.meta))
        for c in chunks
    ]  # fmt: skip


def timed(
    conn: psycopg.Connection[tuple[object, ...]], sql: str, params: list[tuple[object, ...]]
) -> float:
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.executemany(sql, params)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=1800)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    chunks = chunker.chunk_markdown(
        document(args.chunks), count_tokens=count_tokens, counter=CL100K
    )
    insert = f"INSERT INTO docingest.document_chunk_buffer ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    with_words = (
        f"INSERT INTO docingest.document_chunk_buffer ({COLUMNS}, text_words)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('english'::regconfig, %s))"
    )
    parse = (
        "UPDATE docingest.document_chunk_buffer SET text_words = to_tsvector('english'::regconfig,"
        " text) WHERE chunk_id = ANY(%s::uuid[]) AND text_words IS NULL"
    )
    print(
        f"{len(chunks)} chunks of generated plain text; scratch embedded PostgreSQL, one connection"
    )
    with scratch_database() as (dsn, _home), psycopg.connect(dsn, autocommit=True) as conn:
        for run in range(args.repeats):
            a = rows(new_document(conn), chunks)
            parsed_in_insert = timed(conn, with_words, [(*r, r[6]) for r in a])
            b = rows(new_document(conn), chunks)
            plain = timed(conn, insert, b)
            windows = [([r[0] for r in b[i : i + WINDOW]],) for i in range(0, len(b), WINDOW)]
            afterwards = timed(conn, parse, windows)
            print(
                f"run {run + 1}: insert with words {parsed_in_insert:.3f} s; insert without"
                f" {plain:.3f} s, then words per {WINDOW}-chunk window {afterwards:.3f} s"
            )


if __name__ == "__main__":
    main()
