"""Worker Prometheus metrics. Labels are stages, statuses, codes, services and models: never
ids or names."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

from docingest.domain.errors import PermanentError, QuotaExhausted, RateLimited, TransientError

JOBS_CLAIMED = Counter("docingest_worker_jobs_claimed_total", "Jobs claimed by this worker")
JOBS_FINISHED = Counter(
    "docingest_worker_jobs_finished_total",
    "Jobs this worker moved to a terminal status",
    ["status"],
)
RETRIES = Counter(
    "docingest_worker_retries_total", "Transient failures scheduled for retry", ["code"]
)
# dead letters (jobs that exhausted their retries) are code="retries_exhausted"
JOBS_FAILED = Counter(
    "docingest_worker_jobs_failed_total",
    "Jobs this worker failed, by failed status and error code",
    ["status", "code"],
)
STAGE_SECONDS = Histogram(
    "docingest_worker_stage_seconds",
    "Time spent in one stage",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

# embedding path: spend, throttling and the shared circuit (labels: model or service only)
EMBED_REQUESTS = Counter(
    "docingest_embedding_requests_total",
    "Embedding requests sent, by outcome (ok, throttled, failed, rejected, quota)",
    ["model", "outcome"],
)
EMBED_TOKENS = Counter(
    "docingest_embedding_tokens_total", "Tokens embedded (billed inputs)", ["model"]
)
EMBED_COST = Counter(
    "docingest_embedding_cost_usd_total", "Estimated embedding cost in USD", ["model"]
)
EMBED_THROTTLES = Counter(
    "docingest_embedding_throttles_total",
    "Times a request waited: for the shared budget, or after a provider 429",
    ["model", "source"],
)
EMBED_BUDGET_WAIT = Counter(
    "docingest_embedding_budget_wait_seconds_total",
    "Seconds spent waiting for the shared rate budget",
    ["model"],
)
EMBED_REUSED = Counter(
    "docingest_embedding_reused_total",
    "Chunks given an existing vector instead of a provider call",
    ["model"],
)
QUOTA_EXHAUSTED = Counter(
    "docingest_embedding_quota_exhausted_total",
    "Provider answers saying the quota is used up (alert on any increase)",
    ["model"],
)
CIRCUIT_STATE = Gauge(
    "docingest_circuit_state",
    "Circuit breaker state as last seen by this process: 0 closed, 1 half-open, 2 open",
    ["service"],
)

# every request to an external service (parser, embedder): latency and, through the
# histogram's _count, calls by outcome (ok, throttled, quota, rejected, failed, error, cancelled)
EXTERNAL_CALL_SECONDS = Histogram(
    "docingest_external_call_seconds",
    "Duration of one request to an external service, by outcome",
    ["service", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


def call_outcome(exc: BaseException) -> str:
    """The `outcome` label for a request that raised `exc`."""
    if isinstance(exc, RateLimited):
        return "throttled"
    if isinstance(exc, QuotaExhausted):
        return "quota"
    if isinstance(exc, PermanentError):  # the service answered: it refused the request
        return "rejected"
    if isinstance(exc, TransientError):
        return "failed"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


@contextlib.contextmanager
def external_call(service: str, operation: str) -> Iterator[None]:
    """Time the request in the block and record it under its outcome; exceptions propagate."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = call_outcome(exc)
        raise
    finally:
        EXTERNAL_CALL_SECONDS.labels(service, operation, outcome).observe(
            time.perf_counter() - started
        )
