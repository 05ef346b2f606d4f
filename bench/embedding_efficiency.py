"""Embedding efficiency against the fake OpenAI endpoint (a real process, real HTTP):

1. requests per 1,000 chunks and mean batch fill, for a corpus of distinct chunks
   (target: the floor, ceil(chunks / 256) requests);
2. embedding calls on a second ingest of the same corpus as new documents (target 0);
3. achieved tokens per minute with a deep queue under a configured TPM shared by two
   `docingest worker` processes (target >= 90 % of the limit, never above it in any
   sliding 60 s window; the fake enforces the same limit and counts its own refusals).

Rerun: `.venv/bin/python bench/embedding_efficiency.py [--docs 3 --chunks 700]
[--tpm 60000 --minutes 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import scratch_database
from bench.embed_throughput import document
from docingest import bootstrap
from docingest.config import Settings
from docingest.store.db import open_pool
from docingest.testing.procs import free_port, run_process, stop_process
from docingest.testing.seed import place_parsed
from docingest.worker.runner import run_worker

BATCH = 256


def env(dsn: str, home: Path, fake: str, **extra: str) -> dict[str, str]:
    return {
        "DOCINGEST_HOME": str(home),
        "DOCINGEST_DATABASE_URL": dsn,
        "DOCINGEST_EMBEDDER": "openai",
        "DOCINGEST_OPENAI_BASE_URL": f"{fake}/v1",
        "DOCINGEST_OPENAI_API_KEY": "sk-bench",
        "DOCINGEST_EMBED_DIMENSIONS": "256",
        **extra,
    }


async def place(rt: bootstrap.Runtime, docs: list[str]) -> None:
    pool = await open_pool(rt.dsn)
    async with pool.connection() as conn:
        for md in docs:
            await place_parsed(conn, rt.blobs, uuid.uuid4(), md)
    await pool.close()


async def ingest(settings: Settings, docs: list[str]) -> None:
    rt = bootstrap.runtime(settings)
    await place(rt, docs)
    await run_worker(rt, concurrency=4, once=True, handle_signals=False)
    await rt.embedder.aclose()


async def chunk_counts(dsn: str) -> tuple[int, list[int]]:
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status::text AS s, (progress->>'chunks_total')::int AS n"
            " FROM docingest.upload_jobs ORDER BY created_at"
        )
        found = await cur.fetchall()
    await pool.close()
    assert all(r["s"] == "complete" for r in found), found
    return len(found), [int(r["n"]) for r in found]


def stats(fake: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{fake}/stats").json()
    return body


def efficiency(dsn: str, home: Path, fake: str, n_docs: int, n_chunks: int) -> None:
    settings = Settings.from_env(env(dsn, home, fake))
    corpus = [document(n_chunks, seed=1000 + d) for d in range(n_docs)]
    asyncio.run(ingest(settings, corpus))
    first = stats(fake)
    _, per_doc = asyncio.run(chunk_counts(dsn))
    chunks = sum(per_doc)
    floor = math.ceil(chunks / BATCH)
    per_doc_floor = sum(math.ceil(n / BATCH) for n in per_doc)
    requests, inputs = first["requests"], first["inputs"]
    print(f"corpus: {n_docs} documents, {chunks} chunks, all distinct texts")
    print(
        f"  requests: {requests} = {1000 * requests / chunks:.2f} per 1,000 chunks"
        f" (floor ceil(chunks/256) = {floor} = {1000 * floor / chunks:.2f} per 1,000;"
        f" batches are per document, whose floor is {per_doc_floor})"
    )
    print(
        f"  mean batch fill: {inputs / requests:.1f} inputs = {inputs / requests / BATCH:.1%}"
        f" of {BATCH}; provider inputs {inputs} for {chunks} chunks"
    )
    asyncio.run(ingest(settings, corpus))  # the same texts again, as new documents
    second = stats(fake)
    print(
        f"  second ingest of the same corpus: {second['requests'] - requests} embedding"
        f" requests, {second['inputs'] - inputs} inputs (target 0)"
    )


def throughput(dsn: str, home: Path, fake: str, tpm: int, minutes: int) -> None:
    httpx.post(f"{fake}/control", json={"tpm": tpm}).raise_for_status()
    httpx.post(f"{fake}/stats/reset").raise_for_status()
    worker_env = env(dsn, home, fake, DOCINGEST_EMBED_TPM=str(tpm))
    settings = Settings.from_env(worker_env)
    rt = bootstrap.runtime(settings)
    # a deep queue: about twice what the limit lets through in the measured minutes
    needed_chunks = 2 * tpm * minutes // 300
    asyncio.run(place(rt, [document(needed_chunks // 4, seed=2000 + d) for d in range(4)]))
    cmd = [sys.executable, "-m", "docingest", "worker", "--concurrency", "2"]
    procs = [
        subprocess.Popen(
            cmd,
            env={**_base_env(), **worker_env},
            start_new_session=True,
            stderr=subprocess.DEVNULL,  # the workers' JSON logs; the numbers are below
        )
        for _ in range(2)
    ]
    samples: list[tuple[float, int]] = []
    try:
        t0: float | None = None
        while t0 is None or time.monotonic() < t0 + 60 * minutes + 1:
            tokens = stats(fake)["tokens"]
            now = time.monotonic()
            samples.append((now, tokens))
            if t0 is None and tokens > 0:
                t0 = now
            time.sleep(0.2)
    finally:
        for p in procs:
            stop_process(p, kill_group=True)
    final = stats(fake)
    start = next(t for t, tok in samples if tok > 0)

    def tokens_at(t: float) -> int:
        return max(tok for at, tok in samples if at <= t)

    print(f"deep queue, 2 worker processes x 2 slots, DOCINGEST_EMBED_TPM={tpm}:")
    for m in range(minutes):
        got = tokens_at(start + 60 * (m + 1)) - (tokens_at(start + 60 * m) if m else 0)
        print(f"  minute {m + 1}: {got} tokens = {got / tpm:.1%} of the limit")
    print(
        f"  most tokens in any sliding 60 s window (fake's count): "
        f"{final['max_tokens_per_window']} = {final['max_tokens_per_window'] / tpm:.1%}"
        f" of the limit; requests {final['requests']}, refused by the fake's own limiter:"
        f" {final['rate_limit_denials']}"
    )


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=700, help="sections per document")
    ap.add_argument("--tpm", type=int, default=60_000)
    ap.add_argument("--minutes", type=int, default=2)
    ap.add_argument("--latency-ms", type=int, default=20)
    args = ap.parse_args()
    port = free_port()
    fake = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "docingest.testing.fake_openai", "--port", str(port)]
    cmd += ["--latency-ms", str(args.latency_ms)]
    with run_process(cmd, ready_url=f"{fake}/healthz"), scratch_database() as (dsn, home):
        efficiency(dsn, home, fake, args.docs, args.chunks)
        throughput(dsn, home, fake, args.tpm, args.minutes)


if __name__ == "__main__":
    main()
