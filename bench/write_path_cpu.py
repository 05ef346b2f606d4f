"""Two CPU costs of the write path, each against the way it was done before stop 28.

1. The local parser (`clients/pdf_markdown.pdf_to_markdown`, what the parse child runs) on N
   generated 50-page PDFs: CPU seconds, best of `--repeats`, measured in a fresh process.
   `--against SRC` (the `src` folder of another checkout, e.g. a `git worktree` of an older
   commit) alternates that measurement between the two sources `--pairs` times and prints
   every pair: this machine's speed drifts by a third within minutes, so only measurements
   taken side by side compare.
2. Buffering one embedding request's vectors (256 x 1,536 dims as `halfvec`) on a scratch
   embedded PostgreSQL, three ways, seconds per request (best of `--repeats`):
   - an INSERT per vector (psycopg `executemany`, what `store/chunks.insert_vectors` did);
   - one INSERT of unnested arrays with the vectors sent as text (psycopg's default for a
     list of `HalfVector`);
   - one INSERT of unnested arrays with the vectors sent binary (`%b`): `insert_vectors` now.
   Into the real `document_vector_buffer` (its foreign keys, unique constraint and index),
   for chunks buffered beforehand, each way on a document of its own.
Rerun: `.venv/bin/python bench/write_path_cpu.py [--pdfs 8] [--repeats 3] [--against SRC
--pairs 6]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from uuid import UUID

import numpy as np
from pgvector import HalfVector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import docingest
from bench._stack import scratch_database
from docingest.clients.pdf_markdown import pdf_to_markdown
from docingest.store import chunks as chunk_store
from docingest.store.chunks import VectorRow
from docingest.store.db import DictConn, open_pool
from docingest.testing.pdfgen import make_pdf

VECTORS, DIMS = 256, 1536
MODEL, VERSION = "text-embedding-3-small", "bench"
# store/chunks.insert_vectors before stop 28, run with executemany
ONE_BY_ONE = (
    "INSERT INTO docingest.document_vector_buffer (document_id, chunk_id, chunk_sha,"
    " embed_model, embed_version, vector, vector_sha, batch_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
WAYS = ("an INSERT per vector", "one INSERT, text array", "one INSERT, binary (now)")


def parse_cpu(pdfs: int, repeats: int) -> float:
    data = [make_pdf(900_000 + i, pages=50) for i in range(pdfs)]
    pdf_to_markdown(data[0], max_pages=1000)  # imports, PDFium loaded
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for pdf in data:
            pdf_to_markdown(pdf, max_pages=1000)
        best = min(best, time.process_time() - started)
    return best


async def _document(conn: DictConn, chunks: int) -> tuple[UUID, list[VectorRow]]:
    """A document row and `chunks` buffered chunks, and a vector for each."""
    document_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO docingest.documents (document_id, user_id, filename, mime, bytes_len,"
        " file_sha256, raw_path) VALUES (%s, %s, 'bench.pdf', 'application/pdf', 1, %s, 'x')",
        (document_id, uuid.uuid4(), uuid.uuid4().hex * 2),
    )
    rows = [
        chunk_store.ChunkRow(uuid.uuid4(), n, uuid.uuid4().hex * 2, f"chunk {n}", {})
        for n in range(chunks)
    ]
    await chunk_store.insert_chunk_buffer(conn, document_id, "bench", "1", rows)
    rng = np.random.default_rng(len(rows))
    vectors = [
        VectorRow(r.chunk_id, r.chunk_sha, rng.random(DIMS, dtype=np.float32), "v") for r in rows
    ]
    return document_id, vectors


async def _insert(conn: DictConn, way: str, document_id: UUID, rows: list[VectorRow]) -> None:
    batch = uuid.uuid4()
    if way == WAYS[0]:
        params = [
            (document_id, r.chunk_id, r.chunk_sha, MODEL, VERSION, HalfVector(r.vector), "v", batch)
            for r in rows
        ]
        async with conn.cursor() as cur:
            await cur.executemany(ONE_BY_ONE, params)
    elif way == WAYS[1]:  # what it runs now, but with psycopg's default (text) for vectors
        text_array = chunk_store.INSERT_VECTORS.replace("%(vectors)b", "%(vectors)s")
        await conn.execute(
            text_array, chunk_store.vector_params(document_id, MODEL, VERSION, batch, rows)
        )
    else:
        await chunk_store.insert_vectors(conn, document_id, MODEL, VERSION, batch, rows)


async def insert_costs(dsn: str, repeats: int) -> dict[str, float]:
    """Seconds to buffer one request's vectors into `document_vector_buffer`, best of
    `repeats`, each way on its own document (same shape, fresh rows)."""
    best: dict[str, float] = {}
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            for _ in range(repeats):
                for way in WAYS:
                    document_id, rows = await _document(conn, VECTORS)
                    started = time.perf_counter()
                    await _insert(conn, way, document_id, rows)
                    took = time.perf_counter() - started
                    best[way] = min(best.get(way, took), took)
    finally:
        await pool.close()
    return best


def _parse_cpu_in(source: Path | None, pdfs: int, repeats: int) -> tuple[str, float]:
    """(commit, CPU seconds) of `parse_cpu` run in a fresh process importing `docingest` from
    `source` (None: the one this interpreter has)."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    out = subprocess.run(
        [sys.executable, __file__, "--parse-only", "--pdfs", str(pdfs), "--repeats", str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], float(out[1])


def _commit() -> str:
    source = Path(docingest.__file__).resolve().parents[2]
    return (
        subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or "?"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdfs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--against", type=Path, default=None, metavar="SRC")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parse_only:
        print(_commit(), parse_cpu(args.pdfs, args.repeats))
        return
    what = f"local parser, {args.pdfs} generated PDFs x 50 pages, CPU s (best of {args.repeats})"
    if args.against is None:
        commit, cpu = _parse_cpu_in(None, args.pdfs, args.repeats)
        print(f"{what}: commit {commit} {cpu:.3f} s, {1000 * cpu / (50 * args.pdfs):.2f} ms a page")
    else:
        print(f"{what}, side by side:")
        for _ in range(args.pairs):
            theirs = _parse_cpu_in(args.against.resolve(), args.pdfs, args.repeats)
            ours = _parse_cpu_in(None, args.pdfs, args.repeats)
            print(
                f"  commit {theirs[0]} {theirs[1]:.3f} s | commit {ours[0]} {ours[1]:.3f} s"
                f" ({ours[1] / theirs[1]:.2f}x)"
            )
    with scratch_database() as (dsn, _home):
        costs = asyncio.run(insert_costs(dsn, args.repeats))
    print(
        f"{VECTORS} vectors x {DIMS} dims as halfvec, seconds per request (best of {args.repeats}):"
    )
    for way, seconds in costs.items():
        print(f"  {way:24s} {seconds:.4f} s")


if __name__ == "__main__":
    main()
