"""Load test: many clients uploading and polling against `docingest up`, then a check that
nothing was lost.

Starts a scratch embedded Postgres and `docingest up --workers N` (API + worker processes;
local parser, hash embedder: the pipeline's own cost without a network service) on a
throwaway home, then runs `bench/load_locustfile.py` with locust headless in a subprocess
(locust monkey-patches the process with gevent, so it stays out of this one). Prints the
accepted upload rate, status-read latency and response counts, waits for the workers to
drain, and verifies against the database that every upload answered 202 has a document and a
job in a terminal status. Exits non-zero on any lost upload, unfinished job, or 500.

Needs the `bench` extra (`pip install -e '.[bench]'`).
Rerun: `.venv/bin/python bench/load_test.py --users 50 --spawn-rate 10 --duration 60`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import REPO, scratch_database
from docingest.domain.states import JobStatus
from docingest.testing.procs import free_port, run_process

SECRET = "load-secret-0123456789-0123456789-abcdef"
LOCUSTFILE = REPO / "bench" / "load_locustfile.py"


def run_locust(url: str, args: argparse.Namespace, results: Path, log: Path) -> dict[str, Any]:
    cmd = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("--users", str(args.users), "--spawn-rate", str(args.spawn_rate)),
        *("--run-time", f"{args.duration}s", "--host", url, "--loglevel", "WARNING"),
    ]
    env = {**os.environ, "LOAD_JWT_SECRET": SECRET, "LOAD_RESULTS": str(results)}
    with log.open("wb") as out:
        # locust exits 1 when any request "failed" (a 503 counts); our own checks decide
        subprocess.run(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=args.duration + 120
        )
    data: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return data


def job_statuses(dsn: str, job_ids: list[str]) -> dict[str, tuple[JobStatus, float]]:
    """Status and seconds from upload to its last change, of each accepted job whose
    document exists too (missing ones are lost)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT j.job_id::text, j.status, extract(epoch FROM j.updated_at - j.created_at)"
            " FROM docingest.upload_jobs j JOIN docingest.documents d USING (document_id)"
            " WHERE j.job_id = ANY(%s::uuid[])",
            (job_ids,),
        ).fetchall()
    return {job_id: (JobStatus(status), float(age)) for job_id, status, age in rows}


def drain(
    dsn: str, job_ids: list[str], timeout_s: float
) -> tuple[dict[str, tuple[JobStatus, float]], float]:
    """Poll until every accepted job is terminal or the deadline passes."""
    started = time.monotonic()
    while True:
        statuses = job_statuses(dsn, job_ids)
        done = sum(s.is_terminal for s, _ in statuses.values())
        if done == len(job_ids) or time.monotonic() - started > timeout_s:
            return statuses, time.monotonic() - started
        time.sleep(1.0)  # poll interval; the condition is the database's answer


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else 0.0


def report(
    result: dict[str, Any], statuses: dict[str, tuple[JobStatus, float]], drain_s: float
) -> int:
    counts: Counter[str] = Counter(result["counts"])
    by_class: Counter[str] = Counter()
    for key, n in counts.items():
        code = key.split()[1]
        by_class[code if code in ("429", "500", "503") else f"{code[0]}xx"] += n
    accepted = result["accepted"]
    job_ids = {a["job_id"] for a in accepted}
    lost = len(job_ids - statuses.keys())
    unfinished = sum(not s.is_terminal for s, _ in statuses.values())
    failed = sum(s.is_failed for s, _ in statuses.values())
    ages = sorted(age for _, age in statuses.values())
    lat = sorted(result["status_ms"])
    seconds = result["seconds"]
    print(f"run: {seconds:.1f} s of load")
    print(
        f"uploads answered 202: {len(accepted)} ({len(accepted) / seconds:.2f}/s sustained),"
        f" {sum(a['duplicate'] for a in accepted)} of them duplicates"
    )
    print(
        f"status reads: {len(lat)} ok, p50 {percentile(lat, 0.5):.1f} ms,"
        f" p99 {percentile(lat, 0.99):.1f} ms, max {lat[-1] if lat else 0:.1f} ms"
    )
    print("responses: " + ", ".join(f"{k}={by_class[k]}" for k in sorted(by_class)))
    print("  by request: " + ", ".join(f"{k}={counts[k]}" for k in sorted(counts)))
    print(
        f"after {drain_s:.1f} s of drain: {len(job_ids)} accepted jobs, {lost} lost,"
        f" {unfinished} not terminal, {failed} failed"
    )
    print(
        f"upload -> terminal (database): p50 {percentile(ages, 0.5):.1f} s,"
        f" p99 {percentile(ages, 0.99):.1f} s, max {ages[-1] if ages else 0:.1f} s"
    )
    ok = lost == 0 and unfinished == 0 and by_class["500"] == 0 and failed == 0
    print("RESULT: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def main() -> int:
    if importlib.util.find_spec("locust") is None:
        print("locust is missing: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load")
    ap.add_argument("--workers", type=int, default=2, help="worker processes in `up`")
    ap.add_argument("--max-inflight", type=int, default=None, help="DOCINGEST_API_MAX_INFLIGHT")
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    args = ap.parse_args()
    with scratch_database() as (dsn, home):
        env = {
            "DOCINGEST_HOME": str(home),
            "DOCINGEST_DATABASE_URL": dsn,
            "DOCINGEST_JWT_SECRET": SECRET,
            "DOCINGEST_PARSER": "local",
            "DOCINGEST_EMBEDDER": "hash",
            **({"DOCINGEST_API_MAX_INFLIGHT": str(args.max_inflight)} if args.max_inflight else {}),
        }
        port = free_port()
        work = Path(tempfile.mkdtemp(prefix="docingest-load-"))
        up = [sys.executable, "-m", "docingest", "up", "--workers", str(args.workers)]
        with (
            (work / "up.log").open("wb") as up_log,
            run_process(
                [*up, "--port", str(port)],
                env=env,
                ready_url=f"http://127.0.0.1:{port}/readyz",
                timeout_s=120,
                stdout=up_log,
                stderr=subprocess.STDOUT,
            ),
        ):
            result = run_locust(
                f"http://127.0.0.1:{port}", args, work / "results.json", work / "locust.log"
            )
            job_ids = [a["job_id"] for a in result["accepted"]]
            statuses, drain_s = drain(dsn, list(dict.fromkeys(job_ids)), args.drain_timeout)
        print(f"`docingest up --workers {args.workers}`, {args.users} users; logs in {work}")
        return report(result, statuses, drain_s)


if __name__ == "__main__":
    sys.exit(main())
