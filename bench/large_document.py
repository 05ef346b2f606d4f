"""One large real document through chunk -> embed -> promote, first embedded and then with every
vector reused: where docingest's own time goes for the 500-page provider directory, the
document that decides the predictability verdict of `docingest validate` (its vectors are
reused there, embedded by an earlier phase).

The PDF (`../shared/corpus`, or `--pdf`) is parsed once with the local parser's conversion;
its markdown is then placed at `parse_validated` `--repeats` times on a scratch embedded
PostgreSQL and a worker (defaults, the offline `hash` embedder) takes each to `complete`. Each
run prints the job's events in seconds from `chunking`.
Rerun: `.venv/bin/python bench/large_document.py [--pdf PATH] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database
from docingest import bootstrap
from docingest.clients.pdf_markdown import pdf_to_markdown
from docingest.config import Settings
from docingest.store.db import open_pool
from docingest.testing.seed import place_parsed
from docingest.worker.runner import run_worker

DIRECTORY = CORPUS / "real" / "provider_directory_star_health_hospital_network_500p.pdf"


async def one(settings: Settings, markdown: str) -> str:
    rt = bootstrap.runtime(settings)
    pool = await open_pool(settings.database_url)
    try:
        async with pool.connection() as conn:
            placed = await place_parsed(conn, rt.blobs, uuid.uuid4(), markdown)
        await run_worker(rt, concurrency=1, once=True, handle_signals=False)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT action, extract(epoch FROM at - min(at) OVER ()) AS t, j.progress"
                " FROM docingest.events e JOIN docingest.upload_jobs j USING (job_id)"
                " WHERE e.job_id = %s AND action <> 'embedding.batch' ORDER BY at",
                (placed.job_id,),
            )
            rows = await cur.fetchall()
    finally:
        await pool.close()
    progress = rows[-1]["progress"]
    steps = " | ".join(f"{r['action'].removeprefix('job.')} {float(r['t']):.2f}" for r in rows)
    return f"{progress['chunks_total']} chunks, {progress.get('embeds_reused', 0)} reused: {steps}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdf", type=Path, default=DIRECTORY)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    parsed = pdf_to_markdown(args.pdf.read_bytes(), max_pages=1000)
    print(f"{args.pdf.name}: {parsed.pages} pages, {len(parsed.markdown)} characters of markdown;"
          " worker defaults, hash embedder, scratch embedded PostgreSQL")  # fmt: skip
    with scratch_database() as (dsn, home):
        settings = Settings.from_env(
            {
                "DOCINGEST_HOME": str(home),
                "DOCINGEST_DATABASE_URL": dsn,
                "DOCINGEST_EMBEDDER": "hash",
            }
        )
        for run in range(args.repeats):
            print(f"run {run + 1}: {asyncio.run(one(settings, parsed.markdown))}")


if __name__ == "__main__":
    main()
