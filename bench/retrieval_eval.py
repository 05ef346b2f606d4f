"""Retrieval quality of search, per embedder and mode, on member questions over real documents.

Two question sets, each a TSV of id, document, question and answer phrase(s) taken from the
answer-bearing text (alternatives separated by " | "):
- `dev` (`bench/retrieval/questions.tsv`, 55 questions): written in a member's words before any
  retrieval was run; search settings are tuned on this set only;
- `heldout` (`bench/retrieval/heldout.tsv`, 48 questions, see HELDOUT.md): written
  independently by someone who never saw or ran any search system; never tuned on, reported as
  it falls.
A result is a hit when it comes from the question's document and its text contains one of the
phrases (case and whitespace ignored).

The real stack: one embedded PostgreSQL, the documents of every chosen set uploaded together
(one collection, as a member would hold them) and run through the worker pipeline (local parser, chunker, embedder, promotion), once per embedder (each as its own
user, so nothing is shared), then `store.search.search` as the API calls it, k=10.
Prints hit@5 (share of questions with a hit in the top 5) and MRR@10 (mean of 1/rank of the
first hit in the top 10, 0 when none) per embedder and mode, with the settings it ran under.

Rerun: `.venv/bin/python bench/retrieval_eval.py [--embedders hash,wordllama]
[--questions dev,heldout] [--misses]`
(`NAME:DIMS` picks other dimensions, e.g. `wordllama:128`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database

QUESTION_SETS = {
    "dev": Path(__file__).resolve().parent / "retrieval" / "questions.tsv",
    "heldout": Path(__file__).resolve().parent / "retrieval" / "heldout.tsv",
}
MODES = ("vector", "text", "hybrid")
K = 10
HIT_AT = 5


@dataclass(frozen=True)
class Question:
    qid: str
    document: str
    text: str
    phrases: tuple[str, ...]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def load_questions(path: Path = QUESTION_SETS["dev"]) -> list[Question]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        Question(
            r["id"],
            r["document"],
            r["question"],
            tuple(_norm(p) for p in r["answer_phrases"].split("|") if p.strip()),
        )
        for r in rows
    ]


def first_hit(question: Question, results: list[dict[str, Any]]) -> int | None:
    """1-based rank of the first answer-bearing result, None when there is none."""
    for rank, r in enumerate(results, start=1):
        if r["filename"] == question.document and any(
            p in _norm(r["text"]) for p in question.phrases
        ):
            return rank
    return None


def score(ranks: list[int | None]) -> tuple[float, float]:
    """(hit@5, MRR@10) of first-hit ranks."""
    hits = sum(1 for r in ranks if r is not None and r <= HIT_AT)
    mrr = sum(1.0 / r for r in ranks if r is not None and r <= K)
    return hits / len(ranks), mrr / len(ranks)


async def _ingest(rt: Any, dsn: str, user: uuid.UUID, files: list[Path]) -> float:
    from docingest.store import documents
    from docingest.store.db import open_pool
    from docingest.worker.runner import run_worker

    async def body(path: Path):  # type: ignore[no-untyped-def]
        yield path.read_bytes()

    t0 = time.perf_counter()
    async with await open_pool(dsn, max_size=2) as pool:
        for path in files:
            async with pool.connection() as conn:
                await documents.accept_upload(
                    conn,
                    rt.blobs,
                    user_id=user,
                    filename_of=lambda p=path: p.name,
                    chunks=body(path),
                    max_bytes=rt.settings.max_upload_bytes,
                    actor="bench",
                )
        await run_worker(rt, concurrency=2, once=True, handle_signals=False)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status::text AS status, count(*) AS n FROM docingest.upload_jobs"
                " WHERE user_id = %s GROUP BY 1",
                (user,),
            )
            statuses = {r["status"]: r["n"] for r in await cur.fetchall()}
    if statuses != {"complete": len(files)}:
        raise SystemExit(f"ingest did not complete every document: {statuses}")
    return time.perf_counter() - t0


async def _evaluate(
    rt: Any, dsn: str, user: uuid.UUID, questions: list[Question]
) -> dict[str, dict[str, Any]]:
    from docingest.store.db import open_pool
    from docingest.store.search import SearchMode, search

    e = rt.embedder
    out: dict[str, dict[str, Any]] = {}
    async with await open_pool(dsn, max_size=2) as pool, pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM docingest.document_chunks WHERE user_id = %s", (user,)
        )
        row = await cur.fetchone()
        chunks = int(row["n"]) if row else 0
        for mode in MODES:
            ranks: list[int | None] = []
            seconds: list[float] = []
            for q in questions:
                t0 = time.perf_counter()
                [vector] = (await e.embed([q.text])).vectors
                results = await search(
                    conn,
                    user,
                    query=q.text,
                    query_vector=vector,
                    model=e.model,
                    version=e.version,
                    k=K,
                    mode=SearchMode(mode),
                )
                seconds.append(time.perf_counter() - t0)
                ranks.append(first_hit(q, results))
            out[mode] = {
                "ranks": ranks,
                "p50_ms": statistics.median(seconds) * 1000,
                "chunks": chunks,
            }
    return out


def _runtime(spec: str, dsn: str, home: Path) -> Any:
    from docingest import bootstrap
    from docingest.config import Settings

    name, _, dims = spec.partition(":")
    env = {"DOCINGEST_HOME": str(home), "DOCINGEST_DATABASE_URL": dsn, "DOCINGEST_EMBEDDER": name}
    if dims:
        env["DOCINGEST_EMBED_DIMENSIONS"] = dims
    return bootstrap.runtime(Settings.from_env(env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedders", default="hash,wordllama")
    parser.add_argument(
        "--questions", default="dev,heldout", help=f"sets, of {','.join(QUESTION_SETS)}"
    )
    parser.add_argument("--misses", action="store_true", help="list the questions missed")
    args = parser.parse_args()
    sets = {name: load_questions(QUESTION_SETS[name]) for name in args.questions.split(",")}
    questions = [q for qs in sets.values() for q in qs]
    files = sorted({CORPUS / "real" / q.document for q in questions})
    from docingest.pipeline.rank_fusion import RRF_K
    from docingest.store.search import FUSION_WEIGHTS, MIN_FUSION_DEPTH, TEXT_SEARCH_CONFIG
    from docingest.worker.context import StageContext

    print(
        f"settings: sets {', '.join(f'{n} ({len(qs)} questions)' for n, qs in sets.items())} over"
        f" {len(files)} documents of {CORPUS / 'real'}, ingested together; k={K};"
        f" chunker target/max tokens {StageContext.chunk_target_tokens}/"
        f"{StageContext.chunk_max_tokens}; text search config '{TEXT_SEARCH_CONFIG}';"
        f" RRF k={RRF_K}, weights (vector, text) {FUSION_WEIGHTS},"
        f" fusion depth max(k, {MIN_FUSION_DEPTH}); vector search exact; worker concurrency 2"
    )
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with scratch_database() as (dsn, home):
        for spec in args.embedders.split(","):
            rt = _runtime(spec, dsn, home)
            user = uuid.uuid4()
            ingest_s = asyncio.run(_ingest(rt, dsn, user, files))
            results = asyncio.run(_evaluate(rt, dsn, user, questions))
            label = f"{spec} ({rt.embedder.model} {rt.embedder.version})"
            print(f"{label}: ingest {ingest_s:.1f} s, {results['vector']['chunks']} chunks")
            rows.extend((spec, mode, results[mode]) for mode in MODES)
    owner = [name for name, qs in sets.items() for _ in qs]  # ids are per set: both have h01
    for name, qs in sets.items():
        print(f"\n{name}: {len(qs)} questions")
        print("| embedder | mode | hit@5 | MRR@10 | search p50 (ms, embed + query) |")
        print("|---|---|---|---|---|")
        for spec, mode, r in rows:
            ranks = [rk for o, rk in zip(owner, r["ranks"], strict=True) if o == name]
            hit5, mrr = score(ranks)
            print(f"| {spec} | {mode} | {hit5:.3f} | {mrr:.3f} | {r['p50_ms']:.1f} |")
    if args.misses:
        for spec, mode, r in rows:
            missed = [
                f"{name}:{q.qid}"
                for name, q, rank in zip(owner, questions, r["ranks"], strict=True)
                if not rank
            ]
            print(f"missed in top {K}, {spec} {mode}: {' '.join(missed) or '-'}")


if __name__ == "__main__":
    main()
