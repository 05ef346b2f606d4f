"""Search latency per search mode (vector, text, hybrid) and vector strategy (exact, index).

A scratch embedded PostgreSQL gets a `document_chunks` table of `--rows` rows (default
200,000) of 1,536-dim vectors (stored as halfvec, as the pipeline stores them), in documents
of 100 chunks spread over many users, interleaved on disk. Every row carries real text: the
chunker's output for real corpus documents (an EOC, a dental policy, a formulary, an SBC, the
glossary), cycled with a copy number, so the generated tsvector and its GIN index hold real
insurance vocabulary for every user. The measured user holds 5,000 chunks; users of 1,000,
20,000 and 50,000 chunks give the vector crossover. Queries are the 50 first member questions
of bench/retrieval/questions.tsv; vectors are clustered around the fake embedder's vectors of
those questions (the user's 100 chunks per question at growing distance; other users hold some
chunks even closer to the same questions, so an index that filtered only after its candidate
list would return other users' rows and miss k), the rest random.

Then, over real HTTP: `docingest api` (OpenAI embedder against the fake at 0 ms; every other
setting default), `POST /v1/search` with k = 10 as the 5,000-chunk user, `--requests`
sequential requests per search mode: p50/p99, and for vector mode recall@10 against numpy
brute force over the same stored (float16) vectors. Strategy `exact` is the default
(`DOCINGEST_VECTOR_SEARCH`); strategy `index` after `docingest vector-index build` (timed),
where vector and hybrid are measured again (text mode reads no vectors). Finally, in process
(no HTTP, no embedding call), `rank()` p50 per user size and strategy: the crossover.
Then text and hybrid again with `--pending-rows` chunks (default 1,400: a 500-page document)
promoted and not yet merged into the word index (migration 0018), its pending list's pages
printed. Targets (issue 12): exact p99 < 50 ms with recall 1.0; index recall@10 >= 0.95; issue 15:
hybrid, the default, within the same p99.
Rerun: `.venv/bin/python bench/search_latency.py [--rows 200000] [--requests 300] [--plan]
[--strategies exact,index] [--pending-rows 1400]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database
from bench.retrieval_eval import load_questions
from docingest.clients.pdf_markdown import pdf_to_markdown
from docingest.pipeline.chunker import chunk_markdown
from docingest.pipeline.normalize import normalize_markdown
from docingest.pipeline.stored_vector import as_stored
from docingest.pipeline.tokens import count_tokens
from docingest.security.bearer_tokens import mint_token
from docingest.store import search as hybrid_search
from docingest.store import vector_index
from docingest.store.db import open_pool
from docingest.store.vector_search import EF_SEARCH, Strategy, brute_force, rank
from docingest.testing.fake_openai import deterministic_vector
from docingest.testing.procs import free_port, run_process

MODEL, VERSION, DIMS = "text-embedding-3-small", "d1536", 1536
SECRET = "search-bench-secret-0123456789-0123456789"
QUERIES = [q.text for q in load_questions()][:50]
SOURCES = (
    "eoc_medicare_scan_classic_hmo_2025.pdf",
    "policy_delta_dental_nj_family_ppo_i.pdf",
    "formulary_cvs_caremark_performance_drug_list_jul2026.pdf",
    "sbc_aetna_silver_2025.pdf",
    "glossary_cms_uniform_health_coverage.pdf",
)
SEARCH_MODES = ("vector", "text", "hybrid")
DOC = 100  # chunks per document
USERS = {"measured": 5_000, "u1k": 1_000, "u20k": 20_000, "u50k": 50_000}


def query_vector(text: str) -> np.ndarray:
    return as_stored(deterministic_vector(MODEL, text, DIMS))


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def user_vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    """n rows clustered around the query vectors, at growing distance from their center."""
    per = n // len(centers)
    noise = rng.standard_normal((per * len(centers), DIMS)).astype(np.float32)
    scale = np.tile(np.linspace(0.02, 0.12, per, dtype=np.float32), len(centers))[:, None]
    return _unit(np.repeat(centers, per, axis=0) + scale * noise * np.sqrt(DIMS) / 8)


def chunk_texts() -> list[str]:
    """The chunker's output for the source documents, as the pipeline would store it."""
    texts: list[str] = []
    for name in SOURCES:
        md = pdf_to_markdown((CORPUS / "real" / name).read_bytes(), max_pages=1000).markdown
        texts += [c.text for c in chunk_markdown(normalize_markdown(md), count_tokens=count_tokens)]
    return texts


def load(dsn: str, rows: int, seed: int = 7) -> dict[str, uuid.UUID]:
    """Fill document_chunks; returns the user ids by role."""
    texts = chunk_texts()
    rng = np.random.default_rng(seed)
    centers = np.stack([query_vector(q) for q in QUERIES])
    users = {role: uuid.uuid4() for role in USERS}
    docs: list[tuple[uuid.UUID, np.ndarray]] = []
    for role, n in USERS.items():
        vecs = user_vectors(rng, n, centers)
        docs += [(users[role], vecs[i : i + DOC]) for i in range(0, n, DOC)]
    rest = rows - sum(USERS.values())
    for i in range(0, rest, DOC):
        if (i // DOC) % 5 == 0:  # others' documents close to the same queries
            vecs = user_vectors(rng, DOC, centers[rng.choice(len(centers), 2)])
        else:
            vecs = _unit(rng.standard_normal((DOC, DIMS)).astype(np.float32))
        docs.append((uuid.uuid4(), vecs))
    order = rng.permutation(len(docs))  # interleave users' documents on disk
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        with conn.cursor().copy(
            "COPY docingest.documents (document_id, user_id, filename, bytes_len,"
            " file_sha256, raw_path) FROM STDIN"
        ) as copy:
            doc_ids = []
            for n in order:
                doc = uuid.uuid4()
                doc_ids.append(doc)
                copy.write_row((doc, docs[n][0], "x.pdf", 1, doc.hex * 2, "raw/x"))
        with conn.cursor().copy(
            "COPY docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text, embed_model, embed_version,"
            " embedding, vector_sha) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            text6 = ["text"] * 6
            copy.set_types(["uuid", "uuid", "uuid", "int4", *text6, "halfvec", "text"])
            row = 0
            for doc, n in zip(doc_ids, order, strict=True):
                user, vecs = docs[n]
                for ord_, vec in enumerate(vecs):
                    text = f"{texts[row % len(texts)]}\n(copy {row // len(texts)})"
                    row += 1
                    copy.write_row(
                        (uuid.uuid4(), doc, user, ord_, "markdown-simple", "1", "s",
                         text, MODEL, VERSION, HalfVector(vec), "v")
                    )  # fmt: skip
        conn.execute("VACUUM ANALYZE docingest.document_chunks")
    return users


def fill_pending(dsn: str, rows: int) -> None:
    """Promote `rows` chunks for a new user as the worker does, without the merge after it: the
    word index's pending list then holds them (migration 0018), as it does for the moment
    between a large document's promotion and its merge, and keeps them until `pending_pages`
    (autovacuum is off for the table meanwhile)."""
    user, doc = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # autovacuum would merge the list part-way through the measurement (it did, unasked)
        conn.execute("ALTER TABLE docingest.document_chunks SET (autovacuum_enabled = off)")
        conn.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
            " file_sha256, raw_path) VALUES (%s, %s, 'x.pdf', 1, %s, 'raw/x')",
            (doc, user, doc.hex * 2),
        )
        conn.execute(
            "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text, embed_model, embed_version,"
            " embedding, vector_sha)"
            " SELECT gen_random_uuid(), %s, %s, row_number() OVER (), chunker_name,"
            " chunker_version, chunk_sha, text, embed_model, embed_version, embedding, vector_sha"
            " FROM docingest.document_chunks LIMIT %s",
            (doc, user, rows),
        )


def pending_pages(dsn: str) -> int:
    """Merge the pending list; the pages it held."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT docingest.merge_pending_words()").fetchone()
        conn.execute("ALTER TABLE docingest.document_chunks RESET (autovacuum_enabled)")
    return int(row[0]) if row else 0


def stored_rows(dsn: str, user: uuid.UUID) -> tuple[list[uuid.UUID], np.ndarray]:
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        got = conn.execute(
            "SELECT chunk_id, embedding FROM docingest.document_chunks WHERE user_id = %s",
            (user,),
        ).fetchall()
    return [r[0] for r in got], np.stack([r[1].to_numpy().astype(np.float32) for r in got])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def over_http(
    dsn: str,
    fake: str,
    home: Path,
    strategy: str,
    user: uuid.UUID,
    n: int,
    truth: dict[str, set[str]],
) -> dict[str, tuple[list[float], float | None]]:
    """Latencies per search mode (and vector recall@10) with `DOCINGEST_VECTOR_SEARCH=strategy`;
    text mode is measured under `exact` only (it reads no vectors)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
    env.update(
        DOCINGEST_HOME=str(home),
        DOCINGEST_DATABASE_URL=dsn,
        DOCINGEST_JWT_SECRET=SECRET,
        DOCINGEST_EMBEDDER="openai",
        DOCINGEST_OPENAI_BASE_URL=f"{fake}/v1",
        DOCINGEST_OPENAI_API_KEY="sk-bench",
        DOCINGEST_VECTOR_SEARCH=strategy,
        DOCINGEST_LOG_FORMAT="json",
    )
    api = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
    modes = SEARCH_MODES if strategy == "exact" else ("vector", "hybrid")
    out: dict[str, tuple[list[float], float | None]] = {}
    with run_process(api, env=env, ready_url=f"{base}/readyz"), httpx.Client() as client:
        for mode in modes:
            latencies, hits = [], 0
            for q in QUERIES[:5]:  # warm the pool and the plan cache
                body = {"query": q, "k": 10, "mode": mode}
                client.post(f"{base}/v1/search", json=body, headers=headers)
            for i in range(n):
                q = QUERIES[i % len(QUERIES)]
                body = {"query": q, "k": 10, "mode": mode}
                started = time.perf_counter()
                r = client.post(f"{base}/v1/search", json=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                hits += len(truth[q] & {x["chunk_id"] for x in r.json()["results"]})
            out[mode] = (latencies, hits / (10 * n) if mode == "vector" else None)
    return out


async def in_process(dsn: str, users: dict[str, uuid.UUID], reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        for role, user in users.items():
            for strategy in Strategy:
                times = []
                for i in range(reps):
                    q = query_vector(QUERIES[i % len(QUERIES)])
                    started = time.perf_counter()
                    await rank(conn, user, q, model=MODEL, version=VERSION, k=10, strategy=strategy)
                    times.append((time.perf_counter() - started) * 1000)
                out[f"{role}:{strategy.value}"] = times
    return out


async def text_plan(dsn: str, user: uuid.UUID) -> list[str]:
    """EXPLAIN ANALYZE of the text ranking for one question: where the time goes."""
    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        statement, params = hybrid_search.text_ranking(
            user, QUERIES[1], model=MODEL, version=VERSION, depth=hybrid_search.MIN_FUSION_DEPTH
        )
        cur = await conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement, params)
        return [r["QUERY PLAN"] for r in await cur.fetchall()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--plan", action="store_true", help="print the text ranking's whole plan")
    ap.add_argument(
        "--pending-rows",
        type=int,
        default=1_400,
        help="chunks left in the word index's pending list for the last text/hybrid run",
    )
    ap.add_argument(
        "--strategies",
        default="exact,index",
        help="vector strategies over HTTP; index builds the HNSW index first (minutes)",
    )
    args = ap.parse_args()
    fake_port = free_port()
    fake_cmd = [sys.executable, "-m", "docingest.testing.fake_openai", "--port", str(fake_port)]
    fake = f"http://127.0.0.1:{fake_port}"
    with run_process(fake_cmd, ready_url=f"{fake}/healthz"), scratch_database() as (dsn, home):
        started = time.perf_counter()
        users = load(dsn, args.rows)
        print(
            f"{args.rows} rows x {DIMS} dims (halfvec) loaded in {time.perf_counter() - started:.0f} s;"
            f" measured user {USERS['measured']} chunks; documents of {DOC} chunks interleaved;"
            f" k=10; API: OpenAI embedder against the fake at 0 ms, other settings default;"
            f" fusion depth {hybrid_search.MIN_FUSION_DEPTH} per ranking,"
            f" weights (vector, text) {hybrid_search.FUSION_WEIGHTS};"
            f" {len(QUERIES)} member questions cycled"
        )
        ids, vecs = stored_rows(dsn, users["measured"])
        truth = {q: {str(ids[i]) for i in brute_force(vecs, query_vector(q), 10)} for q in QUERIES}
        for strategy in args.strategies.split(","):
            if strategy == "index":
                started = time.perf_counter()
                built = subprocess.run(
                    [sys.executable, "-m", "docingest", "vector-index", "build"],
                    env={
                        **{k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")},
                        "DOCINGEST_HOME": str(home),
                        "DOCINGEST_DATABASE_URL": dsn,
                        "DOCINGEST_EMBEDDER": "openai",
                        "DOCINGEST_OPENAI_API_KEY": "sk-bench",
                    },
                    capture_output=True,
                    text=True,
                    check=True,
                )
                print(
                    f"docingest vector-index build (HNSW m={vector_index.HNSW_M},"
                    f" ef_construction={vector_index.HNSW_EF_CONSTRUCTION}, 2 parallel workers,"
                    f" maintenance_work_mem 1 GB): {time.perf_counter() - started:.0f} s;"
                    f" {built.stdout.strip()[:60]}..."
                )
            measured = over_http(dsn, fake, home, strategy, users["measured"], args.requests, truth)
            extra = f", hnsw.ef_search={EF_SEARCH}, iterative scan" if strategy == "index" else ""
            for mode, (lat, recall) in measured.items():
                print(
                    f"POST /v1/search mode={mode} vector={strategy}{extra}: {args.requests}"
                    f" requests, p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms,"
                    f" max {max(lat):.1f} ms"
                    + (f"; recall@10 {recall:.3f}" if recall is not None else "")
                )
        if "exact" in args.strategies:  # text and hybrid again, a promotion not yet merged
            fill_pending(dsn, args.pending_rows)
            measured = over_http(dsn, fake, home, "exact", users["measured"], args.requests, truth)
            pages = pending_pages(dsn)
            for mode in ("text", "hybrid"):
                lat = measured[mode][0]
                print(
                    f"POST /v1/search mode={mode} vector=exact, word index pending list"
                    f" {pages} pages ({args.pending_rows} chunks promoted, not merged;"
                    f" gin_pending_list_limit 4 MB): {args.requests} requests,"
                    f" p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms"
                )
        if "index" in args.strategies:  # the crossover needs the index
            per_size = asyncio.run(in_process(dsn, users, 60))
            print("rank() in process (no HTTP, no embedding call), p50 ms by user size:")
            for role, n in sorted(USERS.items(), key=lambda kv: kv[1]):
                e = statistics.median(per_size[f"{role}:exact"])
                i = statistics.median(per_size[f"{role}:index"])
                print(f"  {n:>6} chunks: exact {e:7.1f}   index {i:7.1f}")
        plan = asyncio.run(text_plan(dsn, users["measured"]))
        print("\n".join(plan if args.plan else [line for line in plan if "Time:" in line]))


if __name__ == "__main__":
    main()
