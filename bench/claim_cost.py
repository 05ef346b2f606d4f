"""What one claim costs PostgreSQL, planned every time or once (`open_pool(plan_once=True)`).

A worker claims a few times per document, and at 8 workers most claims find nothing (every
NOTIFY wakes every worker with a free slot). The claim query (store/jobs.py `_CLAIM`: fair
order across users, dead-worker rescue, SKIP LOCKED) takes longer to plan than to run, and
psycopg prepares a statement only on its fifth run on a connection, after which PostgreSQL
plans it five more times before it considers a generic plan.

On a scratch embedded PostgreSQL, with `--done` complete jobs (200,000 by default, the
history a claim must not scan), `--queued` claimable jobs across 50 users and 16 running
ones, each mode runs the claim `--runs` times on a new connection (autocommit, as the
worker claims; what a claim took is given back before the next), and prints the median and p90 milliseconds of the
statement's round trip, for a claim that takes jobs and for one that finds none:
- planned every time: what a statement psycopg has not prepared yet costs (its first four
  runs on each connection);
- prepared, custom plans: `plan_cache_mode = force_custom_plan` (what PostgreSQL does for a
  prepared statement's first five runs);
- prepared, generic plan: `plan_cache_mode = force_generic_plan`, the worker's pool
  (`plan_once`).
It also prints which indexes the generic plan reads, so a plan that scans the history shows.
Rerun: `.venv/bin/python bench/claim_cost.py [--done 200000] [--queued 200] [--runs 300]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import scratch_database
from docingest.store import jobs

WORKER = "bench-worker"

# jobs of `n` users: documents first (the job's foreign key), then the jobs themselves
_SEED = """
WITH docs AS (
    INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len, file_sha256,
                                     raw_path)
    SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad((i %% %(users)s)::text, 12,
           '0'))::uuid, 'f.pdf', 1, md5(i::text || %(tag)s) || md5(i::text || %(tag)s),
           'raw/x'
    FROM generate_series(1, %(n)s) AS i
    RETURNING document_id, user_id
)
INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, status, raw_path,
                                   correlation_id, claimed_by, lease_expires_at,
                                   next_attempt_at)
SELECT gen_random_uuid(), user_id, document_id, %(status)s::docingest.job_status, 'raw/x',
       gen_random_uuid(), %(holder)s,
       CASE WHEN %(holder)s::text IS NULL THEN NULL ELSE now() + interval '1 hour' END,
       now() - interval '1 minute'
FROM docs
"""


def seed(conn: psycopg.Connection[tuple[object, ...]], done: int, queued: int) -> None:
    for tag, n, users, status, holder in (
        ("done", done, 1000, "complete", None),
        ("queued", queued, 50, "uploaded", None),
        ("running", 16, 8, "embedding_in_progress", "another-worker"),
    ):
        if n:
            conn.execute(
                _SEED, {"tag": tag, "n": n, "users": users, "status": status, "holder": holder}
            )
    conn.execute("ANALYZE docingest.documents, docingest.upload_jobs")


def claim_ms(
    conn: psycopg.Connection[tuple[object, ...]], *, prepare: bool, excluded: list[str], runs: int
) -> tuple[list[float], int]:
    """Round trip of each claim (autocommit, as the worker claims), and the jobs it took;
    what it took is given back after each one, untimed, so every claim sees the same queue."""
    params = {"worker": WORKER, "lease": 60, "excluded": excluded, "limit": 2}
    times, taken = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        taken = len(conn.execute(jobs._CLAIM, params, prepare=prepare).fetchall())
        times.append(1000 * (time.perf_counter() - started))
        conn.execute(_GIVE_BACK, (WORKER,), prepare=False)
    return times, taken


_GIVE_BACK = (
    "UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL,"
    " attempt = 0 WHERE claimed_by = %s"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--done", type=int, default=200_000)
    ap.add_argument("--queued", type=int, default=200)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    with scratch_database() as (dsn, _home), psycopg.connect(dsn, autocommit=True) as conn:
        seed(conn, args.done, args.queued)
        print(
            f"scratch embedded PostgreSQL; {args.done:,} complete jobs, {args.queued} claimable"
            f" across 50 users, 16 running; {args.runs} claims per row (limit 2, autocommit,"
            " taken jobs given back), a new connection per row"
        )
        # every claimable job is `uploaded`: excluding that status makes a claim that finds none
        for label, excluded in (("takes 2 jobs", []), ("finds none", ["uploaded"])):
            for mode, prepare, cache_mode in (
                ("planned every time", False, "auto"),
                ("prepared, custom plans", True, "force_custom_plan"),
                ("prepared, generic plan", True, "force_generic_plan"),
            ):
                # the last row's claims and give-backs left dead rows: not this row's cost
                conn.execute("VACUUM (ANALYZE) docingest.upload_jobs")
                with psycopg.connect(dsn, autocommit=True) as fresh:  # nothing prepared yet
                    fresh.execute(f"SET plan_cache_mode = {cache_mode}")
                    claim_ms(fresh, prepare=prepare, excluded=excluded, runs=10)  # warm caches
                    times, taken = claim_ms(
                        fresh, prepare=prepare, excluded=excluded, runs=args.runs
                    )
                p90 = statistics.quantiles(times, n=10)[-1]
                print(
                    f"  claim that {label:12s} {mode:24s} p50 {statistics.median(times):6.3f} ms"
                    f"  p90 {p90:6.3f} ms  (took {taken})"
                )
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE claim_plan AS " + _numbered(jobs._CLAIM))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN (COSTS OFF) EXECUTE claim_plan ('bench-worker', 60, '{}', 2)"
            )
        )
        used = sorted({w.strip(" ,") for w in plan.split() if w.startswith("upload_jobs_")})
        scans = plan.count("Seq Scan on upload_jobs")
        print(
            f"generic plan: indexes {', '.join(used) or 'none'}; seq scans of upload_jobs {scans}"
        )


def _numbered(query: str) -> str:
    """`%(name)s` placeholders as $1..$4, for a PREPARE."""
    for i, name in enumerate(("worker", "lease", "excluded", "limit"), start=1):
        query = query.replace(f"%({name})s", f"${i}")
    return query


if __name__ == "__main__":
    main()
