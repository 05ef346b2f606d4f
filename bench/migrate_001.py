"""Benchmark: `migrate-001` throughput and memory.

Builds a 001 database of N documents x 20 chunks x 1536 dimensions (every document at
`embedded`/`done`, so every chunk is carried and promoted) on a throwaway embedded Postgres,
migrates it into docingest on the same server, and prints chunks migrated per second (the
migration only: building the source is timed apart), the peak RSS of the migrating process,
and the load average before/after (the target is for 2 otherwise idle cores: a loaded machine
shows lower figures). Source rows are generated with SQL and COPY; the 001 HNSW
index is dropped first (reading does not need it, and building it would dominate the setup).

    .venv/bin/python -m bench.migrate_001 [--documents 10000] [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from bench._stack import REPO, scratch_database
from docingest.ops import migrate_001
from docingest.pipeline import ids
from docingest.pipeline.chunker import CHUNKER_NAME, CHUNKER_VERSION
from docingest.testing.legacy001 import DIMENSIONS, MODEL, VERSION, load_schema

SCHEMA_SQL = REPO.parent / "shared" / "legacy-001" / "schema.sql"
VECTOR_POOL = 64


def build_source(dsn: str, documents: int, chunks: int) -> None:
    load_schema(dsn, SCHEMA_SQL)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO upload_pipeline, public")
        conn.execute("DROP INDEX idx_hnsw_chunks_te3s_v1")
        conn.execute(
            "CREATE TEMP TABLE pool AS SELECT g.p, (SELECT array_agg(random() - 0.5 + x * 0 + g.p * 0)"
            " FROM generate_series(1, %s) x)::vector AS v FROM generate_series(0, %s) AS g(p)",
            (DIMENSIONS, VECTOR_POOL - 1),
        )
        conn.execute("CREATE TEMP TABLE keys (document_id uuid, chunk_ord int, chunk_id uuid)")
        docs = [uuid.uuid4() for _ in range(documents)]
        with conn.cursor().copy("COPY keys FROM STDIN") as copy:
            for d in docs:
                for o in range(chunks):
                    copy.write_row((d, o, ids.chunk_id(d, CHUNKER_NAME, CHUNKER_VERSION, o)))
        conn.execute(
            "INSERT INTO documents (document_id, user_id, filename, mime, bytes_len,"
            " file_sha256, raw_path) SELECT document_id, gen_random_uuid(), 'f.pdf',"
            " 'application/pdf', 1000, encode(sha256(document_id::text::bytea), 'hex'),"
            " 'storage://raw/u/' || document_id || '.pdf'"
            " FROM (SELECT DISTINCT document_id FROM keys) k"
        )
        conn.execute(
            "INSERT INTO upload_jobs (job_id, document_id, stage, state)"
            " SELECT gen_random_uuid(), document_id, 'embedded', 'done' FROM documents"
        )
        conn.execute(
            "INSERT INTO document_chunks (chunk_id, document_id, chunker_name, chunker_version,"
            " chunk_ord, text, chunk_sha, embed_model, embed_version, vector_dim, embedding)"
            " SELECT k.chunk_id, k.document_id, %s, %s, k.chunk_ord, t.text,"
            " encode(sha256(convert_to(t.text, 'UTF8')), 'hex'), %s, %s, %s, pool.v"
            " FROM keys k"
            " CROSS JOIN LATERAL (SELECT 'Section ' || k.chunk_ord || ' of plan ' || k.document_id"
            "   || ': ' || repeat('the deductible applies before coinsurance. ', 8) AS text) t"
            " JOIN pool ON pool.p = (k.chunk_ord + abs(hashtext(k.document_id::text))) %% %s",
            (CHUNKER_NAME, CHUNKER_VERSION, MODEL, VERSION, DIMENSIONS, VECTOR_POOL),
        )
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    with scratch_database() as (dsn, _home):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE legacy")
        legacy = make_conninfo(dsn, dbname="legacy")
        t0 = time.perf_counter()
        build_source(legacy, args.documents, args.chunks)
        built = time.perf_counter() - t0
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        summary = asyncio.run(migrate_001.migrate(legacy, dsn, None, migrate_001.Options()))
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        load1 = os.getloadavg()[0]
    assert summary.committed and summary.by_status == {"complete": args.documents}
    print(
        f"source: {args.documents} documents x {args.chunks} chunks x {DIMENSIONS} dims,"
        f" built in {built:.1f} s"
    )
    print(
        f"migrated {summary.chunks} chunks in {elapsed:.1f} s:"
        f" {summary.chunks / elapsed:,.0f} chunks/s"
    )
    print(
        f"peak RSS {peak / 1024:.0f} MiB (before the migration {rss0 / 1024:.0f} MiB),"
        f" batch {migrate_001.DEFAULT_BATCH_DOCUMENTS} documents"
    )
    print(f"load average (1 min) {load0:.2f} before, {load1:.2f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
