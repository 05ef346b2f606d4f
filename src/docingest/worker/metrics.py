"""Worker Prometheus metrics. Labels are stages, statuses and codes: never ids or names."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS_CLAIMED = Counter("docingest_worker_jobs_claimed_total", "Jobs claimed by this worker")
JOBS_FINISHED = Counter(
    "docingest_worker_jobs_finished_total",
    "Jobs this worker moved to a terminal status",
    ["status"],
)
RETRIES = Counter(
    "docingest_worker_retries_total", "Transient failures scheduled for retry", ["code"]
)
STAGE_SECONDS = Histogram(
    "docingest_worker_stage_seconds",
    "Time spent in one stage",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
