"""`GET /v1/jobs/{id}` latency with 10,000 jobs in the table while an ingest runs.

Starts a scratch embedded Postgres, seeds 10,000 documents + jobs for one user, runs
`docingest api` (uvicorn, real HTTP on loopback) and, at the same time, `docingest ingest` of
the 232-page EOC (parse, chunk, embed, store), then reads random jobs one request at a time.
Rerun: `.venv/bin/python bench/status_latency.py [--jobs 10000] [--requests 2000]`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS, scratch_database
from docingest.security.bearer_tokens import mint_token
from docingest.testing.procs import free_port, run_process

SECRET = "bench-secret-0123456789-0123456789-abcdef"


def seed(dsn: str, user: uuid.UUID, n: int) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            WITH ids AS (SELECT gen_random_uuid() AS d, gen_random_uuid() AS j, g FROM generate_series(1, %(n)s) g),
            docs AS (
              INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len, file_sha256, raw_path)
              SELECT d, %(u)s, 'seed.pdf', 1000, encode(sha256(d::text::bytea), 'hex'), 'raw/seed' FROM ids
            )
            INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path, status, correlation_id)
            SELECT j, %(u)s, d, 'raw/seed', 'complete', gen_random_uuid() FROM ids
            """,
            {"n": n, "u": user},
        )
        conn.execute("ANALYZE docingest.upload_jobs")
        return [
            r[0] for r in conn.execute("SELECT job_id::text FROM docingest.upload_jobs").fetchall()
        ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    with scratch_database() as (dsn, home):
        user = uuid.uuid4()
        job_ids = seed(dsn, user, args.jobs)
        env = {
            **os.environ,
            "DOCINGEST_HOME": str(home),
            "DOCINGEST_DATABASE_URL": dsn,
            "DOCINGEST_JWT_SECRET": SECRET,
        }
        port = free_port()
        api = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
        with run_process(api, env=env, ready_url=f"http://127.0.0.1:{port}/readyz", timeout_s=60):
            eoc = CORPUS / "real" / "eoc_medicare_scan_classic_hmo_2025.pdf"
            ingest = subprocess.Popen(
                [sys.executable, "-m", "docingest", "ingest", "--json", str(eoc)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            rng = random.Random(1)
            headers = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
            lat: list[float] = []
            during_ingest = 0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                for _ in range(50):  # warm-up: pool connections, code paths
                    client.get(f"/v1/jobs/{rng.choice(job_ids)}").raise_for_status()
                for _ in range(args.requests):
                    t = time.perf_counter()
                    r = client.get(f"/v1/jobs/{rng.choice(job_ids)}")
                    lat.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    during_ingest += ingest.poll() is None
            ingest.wait(timeout=300)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"GET /v1/jobs/{{id}}: {len(lat)} requests, {args.jobs} jobs in the table")
    print(f"  {during_ingest} of them while `docingest ingest` of the 232-page EOC was running")
    print(
        f"  p50 {p(0.50):.2f} ms  p90 {p(0.90):.2f} ms  p99 {p(0.99):.2f} ms  max {lat[-1]:.2f} ms  mean {statistics.fmean(lat):.2f} ms"
    )


if __name__ == "__main__":
    main()
