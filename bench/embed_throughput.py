"""chunk -> embed -> store throughput against the fake OpenAI endpoint at 50 ms per request.

A ~1,800-chunk plain-text document (generated, deterministic) is placed at `parse_validated`;
the BaseWorker (default settings) then chunks it, embeds it through the fake server over HTTP
in micro-batches, persists every batch, and promotes everything into the searchable table.
Targets (issue 12): searchable >= 1,300 chunks/s, and searchable within 1.25x of durable.
The fake server's own CPU time per run is printed too: on a loaded 2-core machine it is
CPU taken from the worker and Postgres.
Rerun: `.venv/bin/python bench/embed_throughput.py [--chunks 1800] [--latency-ms 50] [--timeline]`
(`--timeline` also prints each run's job events, in seconds from `chunking`).
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid

import httpx
import psutil

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from bench._stack import scratch_database
from docingest import bootstrap
from docingest.cli.common import run_async
from docingest.config import Settings
from docingest.store.db import open_pool
from docingest.store.embedded_pg import EMBEDDED_MAJOR
from docingest.testing.procs import free_port, run_process
from docingest.testing.seed import place_parsed
from docingest.worker.embed_batcher import MAX_IN_FLIGHT
from docingest.worker.embedding import WINDOWS_IN_FLIGHT
from docingest.worker.runner import run_worker

WORDS = [
    "deductible",
    "coinsurance",
    "copayment",
    "premium",
    "network",
    "provider",
    "claim",
    "benefit",
    "coverage",
    "plan",
    "member",
    "hospital",
    "outpatient",
    "prescription",
    "specialist",
    "referral",
    "emergency",
    "preventive",
    "annual",
    "limit",
]


def document(n_chunks: int, seed: int = 7) -> str:
    """Plain text, one ~350-token section per chunk target (the chunker decides the real split)."""
    rng = random.Random(seed)
    parts = []
    for i in range(n_chunks):
        words = " ".join(rng.choice(WORDS) for _ in range(300))
        parts.append(f"# Section {i}\n\n{words}.\n")
    return "\n".join(parts)


async def place_document(dsn: str, rt: bootstrap.Runtime, markdown: str) -> uuid.UUID:
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        placed = await place_parsed(conn, rt.blobs, uuid.uuid4(), markdown)
    await pool.close()
    return placed.job_id


async def measure(
    dsn: str, settings: Settings, n_chunks: int, seed: int
) -> tuple[int, float, float, str]:
    """(chunks, seconds until the vectors are durable in Postgres, seconds until searchable,
    the job's events in seconds from `chunking`), timed from the job entering `chunking`
    (event timestamps, database clock)."""
    rt = bootstrap.runtime(settings)  # a fresh HTTP client for this event loop
    job = await place_document(dsn, rt, document(n_chunks, seed))
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    await rt.embedder.aclose()
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT j.status, (j.progress->>'chunks_total')::int AS n,"
            " extract(epoch FROM max(e.at) FILTER (WHERE e.action = 'job.embeddings_stored')"
            "   - max(e.at) FILTER (WHERE e.action = 'job.chunking')) AS stored_s,"
            " extract(epoch FROM max(e.at) FILTER (WHERE e.action = 'job.complete')"
            "   - max(e.at) FILTER (WHERE e.action = 'job.chunking')) AS complete_s"
            " FROM docingest.upload_jobs j JOIN docingest.events e ON e.job_id = j.job_id"
            " WHERE j.job_id = %s GROUP BY j.status, j.progress",
            (job,),
        )
        row = await cur.fetchone()
        cur = await conn.execute(
            "SELECT action, extract(epoch FROM at - min(at) FILTER (WHERE action = 'job.chunking')"
            "   OVER ()) AS t FROM docingest.events WHERE job_id = %s ORDER BY at",
            (job,),
        )
        steps = [r for r in await cur.fetchall() if r["t"] is not None and r["t"] >= 0]
    await pool.close()
    assert row is not None and row["status"] == "complete", row
    timeline = " | ".join(f"{r['action'].removeprefix('job.')} {float(r['t']):.2f}" for r in steps)
    return int(row["n"]), float(row["stored_s"]), float(row["complete_s"]), timeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=1800)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeline", action="store_true", help="print each run's job events")
    args = ap.parse_args()
    port = free_port()
    fake = [
        sys.executable,
        "-m",
        "docingest.testing.fake_openai",
        "--port",
        str(port),
        "--latency-ms",
        str(args.latency_ms),
    ]
    with (
        run_process(fake, ready_url=f"http://127.0.0.1:{port}/healthz") as fake_proc,
        scratch_database() as (dsn, home),
    ):
        fake_cpu = psutil.Process(fake_proc.pid)
        settings = Settings.from_env(
            {
                "DOCINGEST_HOME": str(home),
                "DOCINGEST_DATABASE_URL": dsn,
                "DOCINGEST_EMBEDDER": "openai",
                "DOCINGEST_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                "DOCINGEST_OPENAI_API_KEY": "sk-bench",
            }
        )
        # warm the fake (its tokenizer loads on first use) outside the measurement
        httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"input": ["warm up"], "model": "text-embedding-3-small"},
        ).raise_for_status()
        print(
            f"chunk -> embed -> store against the fake endpoint at {args.latency_ms} ms/request,"
            f" text-embedding-3-small 1536 dims stored as halfvec, {args.chunks} chunks;"
            f" worker defaults: 1 slot, {WINDOWS_IN_FLIGHT} windows per job and"
            f" {MAX_IN_FLIGHT} requests per worker in flight, 256 inputs per request;"
            f" embedded PostgreSQL {EMBEDDED_MAJOR}; exact search (no vector index)"
        )
        print(
            "(timed from the job entering `chunking`; new text every run, so no vector is reused)"
        )
        for run in range(args.runs):
            httpx.post(f"http://127.0.0.1:{port}/stats/reset").raise_for_status()
            cpu_before = sum(fake_cpu.cpu_times()[:2])
            # on the event loop `docingest worker` runs (uvloop where installed)
            n, stored_s, complete_s, timeline = run_async(
                measure(dsn, settings, args.chunks, seed=run)
            )
            stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
            fake_ms = (sum(fake_cpu.cpu_times()[:2]) - cpu_before) * 1000
            print(
                f"run {run + 1}: {n} chunks, {stats['requests']} requests; vectors durable"
                f" (embeddings_stored) in {stored_s:.2f} s = {n / stored_s:.0f} chunks/s;"
                f" searchable (complete) in {complete_s:.2f} s = {n / complete_s:.0f} chunks/s;"
                f" searchable/durable time {complete_s / stored_s:.2f}x;"
                f" fake server CPU {fake_ms:.0f} ms"
                f" ({fake_ms / max(1, stats['requests']):.0f} ms per request)"
            )
            if args.timeline:
                print(f"  events (s from chunking): {timeline}")


if __name__ == "__main__":
    main()
