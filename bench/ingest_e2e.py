"""End-to-end ingest time and memory per document on the embedded default (embedded PostgreSQL 18,
local parser, hash embedder), one fresh process and database per document.

Reports: pages, chunks, seconds from upload to `complete` (embedded Postgres start-up not
included, printed separately), the worker's peak RSS, and the parse child's peak RSS.
Rerun: `.venv/bin/python bench/ingest_e2e.py [FILE ...]` (default: a 6-page glossary, the
232-page SCAN EOC and the 500-page hospital list from ../shared/corpus/real).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database

DEFAULT = [
    "real/glossary_cms_uniform_health_coverage.pdf",
    "real/eoc_medicare_scan_classic_hmo_2025.pdf",
    "real/provider_directory_star_health_hospital_network_500p.pdf",
]


def measure_one(path: Path) -> dict[str, object]:
    from docingest import bootstrap
    from docingest.config import Settings
    from docingest.store import documents, jobs
    from docingest.store.db import open_pool
    from docingest.worker.runner import run_worker

    started_pg = time.perf_counter()
    with scratch_database() as (dsn, home):
        pg_s = time.perf_counter() - started_pg
        rt = bootstrap.runtime(
            Settings.from_env({"DOCINGEST_HOME": str(home), "DOCINGEST_DATABASE_URL": dsn})
        )

        async def run() -> dict[str, object]:
            pool = await open_pool(dsn)
            t0 = time.perf_counter()

            async def chunks():  # type: ignore[no-untyped-def]
                yield path.read_bytes()

            async with pool.connection() as conn:
                res = await documents.accept_upload(
                    conn,
                    rt.blobs,
                    user_id=uuid.uuid4(),
                    filename_of=lambda: path.name,
                    chunks=chunks(),
                    max_bytes=rt.settings.max_upload_bytes,
                    actor="bench",
                )
            await run_worker(rt, concurrency=1, once=True, handle_signals=False)
            elapsed = time.perf_counter() - t0
            async with pool.connection() as conn:
                job = await jobs.get(conn, res.job_id)
            await pool.close()
            assert job is not None
            return {
                "status": job.status.value,
                "chunks": job.progress.get("chunks_total", 0),
                "seconds": round(elapsed, 2),
            }

        out = asyncio.run(run())
    out["pg_start_s"] = round(pg_s, 2)
    out["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["parse_child_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
    )
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(Path(sys.argv[2]))))
        return
    files = [Path(a) for a in sys.argv[1:]] or [CORPUS / f for f in DEFAULT]
    print(
        f"{'document':58} {'pages':>5} {'chunks':>6} {'status':>9} {'seconds':>8} {'worker RSS MB':>13} {'parser RSS MB':>13}"
    )
    for f in files:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(f)], capture_output=True, text=True, check=True
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        import pypdfium2

        pages = len(pypdfium2.PdfDocument(str(f)))
        print(
            f"{f.name[:58]:58} {pages:>5} {r['chunks']:>6} {r['status']:>9} {r['seconds']:>8} "
            f"{r['worker_peak_rss_mb']:>13} {r['parse_child_peak_rss_mb']:>13}"
        )


if __name__ == "__main__":
    main()
