"""Search latency per mode for one user holding 5,000 chunks, beside other users' rows.

Chunks are real text: the chunker's output for real corpus documents (SCAN EOC, Delta Dental
policy, CVS formulary, glossary), repeated with a copy number so every row is distinct, embedded
with the configured embedder (default: the offline semantic one) and inserted straight into
`document_chunks` for one user, plus `--others` rows spread over 20 other users. Then
`--queries` member-style questions per mode through `store.search.search` (query embedding
included in the time), and one EXPLAIN ANALYZE of the hybrid query.

Rerun: `.venv/bin/python bench/search_latency.py [--chunks 5000] [--others 15000]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database

SOURCES = (
    "eoc_medicare_scan_classic_hmo_2025.pdf",
    "policy_delta_dental_nj_family_ppo_i.pdf",
    "formulary_cvs_caremark_performance_drug_list_jul2026.pdf",
    "glossary_cms_uniform_health_coverage.pdf",
)
QUERIES = (
    "how much do I pay for a specialist visit",
    "does my plan cover hearing aids",
    "is ozempic covered",
    "what is the deductible for dental cleanings",
    "can I get a gym membership",
    "what happens if I need care abroad",
    "how do I appeal a denied claim",
    "what is balance billing",
)


def _texts(n: int) -> list[str]:
    from docingest.clients.pdf_markdown import pdf_to_markdown
    from docingest.pipeline.chunker import chunk_markdown
    from docingest.pipeline.normalize import normalize_markdown
    from docingest.pipeline.tokens import count_tokens

    base: list[str] = []
    for name in SOURCES:
        md = pdf_to_markdown((CORPUS / "real" / name).read_bytes(), max_pages=1000).markdown
        base += [c.text for c in chunk_markdown(normalize_markdown(md), count_tokens=count_tokens)]
    return [f"{base[i % len(base)]}\n(copy {i // len(base)})" for i in range(n)]


async def _load(dsn: str, embedder: Any, owners: list[tuple[uuid.UUID, list[str]]]) -> None:
    from psycopg.types.json import Jsonb

    from docingest.store.db import open_pool

    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        for user, texts in owners:
            doc = uuid.uuid4()
            await conn.execute(
                "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
                " file_sha256, raw_path) VALUES (%s, %s, 'bench.pdf', 1, %s, 'raw/bench')",
                (doc, user, f"{doc.int:064x}"[-64:]),
            )
            vectors = await embedder.embed(texts)
            meta = Jsonb({"page_start": 1, "page_end": 1, "heading_path": []})
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id,"
                    " chunk_ord, chunker_name, chunker_version, chunk_sha, text, meta,"
                    " embed_model, embed_version, embedding, vector_sha)"
                    " VALUES (%s, %s, %s, %s, 'markdown-simple', '1', 's', %s, %s, %s, %s, %s, 'v')",
                    [
                        (uuid.uuid4(), doc, user, i, t, meta, embedder.model, embedder.version, v)
                        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
                    ],
                )
        await conn.execute("ANALYZE docingest.document_chunks")


async def _measure(dsn: str, embedder: Any, user: uuid.UUID, rounds: int) -> dict[str, Any]:
    from psycopg import sql

    from docingest.store import search as s
    from docingest.store.db import open_pool

    out: dict[str, Any] = {}
    async with await open_pool(dsn, max_size=1) as pool, pool.connection() as conn:
        for mode in s.SearchMode:
            times = []
            for i in range(rounds):
                q = QUERIES[i % len(QUERIES)]
                t0 = time.perf_counter()
                vec = None if mode is s.SearchMode.TEXT else (await embedder.embed([q]))[0]
                await s.search(
                    conn,
                    user,
                    query=q,
                    query_vector=vec,
                    model=embedder.model,
                    version=embedder.version,
                    dimensions=embedder.dimensions,
                    k=10,
                    mode=mode,
                )
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            out[mode.value] = (statistics.median(times), times[int(0.99 * (len(times) - 1))])
        [vec] = await embedder.embed([QUERIES[1]])
        async with conn.transaction():
            use_index = await s._prepare_vector_scan(conn)
            ranking = s._fused(
                s._vector_ranking(embedder.dimensions, use_index=use_index), s._text_ranking()
            )
            plan = await conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + s._RESULTS.format(ranking=ranking),
                {
                    "user": user,
                    "m": embedder.model,
                    "v": embedder.version,
                    "k": 10,
                    "query": QUERIES[1],
                    "q": vec,
                    "depth": s.MIN_FUSION_DEPTH,
                },
            )
            out["plan"] = [r["QUERY PLAN"] for r in await plan.fetchall()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--others", type=int, default=15000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--plan", action="store_true", help="print the whole hybrid plan")
    args = parser.parse_args()
    from docingest import bootstrap
    from docingest.config import Settings

    texts = _texts(args.chunks + args.others)
    with scratch_database() as (dsn, home):
        rt = bootstrap.runtime(
            Settings.from_env({"DOCINGEST_HOME": str(home), "DOCINGEST_DATABASE_URL": dsn})
        )
        e = rt.embedder
        me = uuid.uuid4()
        owners = [(me, texts[: args.chunks])]
        per_other = max(1, args.others // 20)
        rest = texts[args.chunks :]
        owners += [(uuid.uuid4(), rest[i : i + per_other]) for i in range(0, len(rest), per_other)]
        asyncio.run(_load(dsn, e, owners))
        result = asyncio.run(_measure(dsn, e, me, args.queries))
    print(
        f"settings: embedder {e.model} {e.version}; one user with {args.chunks} chunks, "
        f"{args.others} rows of 20 other users; k=10; {args.queries} queries per mode "
        "(embedding included); embedded PostgreSQL 18 + pgvector 0.8.5, defaults"
    )
    print("| mode | p50 ms | p99 ms |")
    print("|---|---|---|")
    for mode in ("vector", "text", "hybrid"):
        p50, p99 = result[mode]
        print(f"| {mode} | {p50:.1f} | {p99:.1f} |")
    plan = result["plan"]
    print("\n".join(plan if args.plan else [line for line in plan if "Time:" in line]))


if __name__ == "__main__":
    main()
