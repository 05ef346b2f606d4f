"""The measured phases of `docingest validate`, each against a running `Stack`.

Every number comes from what the stack did: job rows (timestamps on the database's clock),
the fake services' own counters, and answers over HTTP. Nothing is estimated.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

from docingest.ops.validation.corpus_manifest import (
    CorpusFile,
    check_outcome,
    read_manifest,
    should_complete,
)
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import StatusSampler, Upload, upload, upload_generated

EMBED_BATCH = 256  # DOCINGEST_EMBED_BATCH_SIZE default: the floor is ceil(texts / 256)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def corpus_files(corpus: Path, plan: Plan) -> list[CorpusFile]:
    files = read_manifest(corpus)
    chosen = []
    for f in files:
        if f.name.startswith("hostile/") and not plan.hostile:
            continue
        if plan.corpus_max_bytes is None or f.size <= plan.corpus_max_bytes:
            chosen.append(f)
    return chosen


# --- reliability, embedding and status latency (one run under faults) ------------------


def reliability(stack: Stack, plan: Plan, corpus: Path) -> dict[str, Any]:
    """Corpus + generated documents through the stack while both fakes inject faults.

    Faults: parser upload 429s and 500s, a dropped callback (found by the reconciler),
    duplicated and reordered callbacks, embedder 429s and 500s.
    """
    stack.restart_workers(plan.reliability_workers)
    stack.openai_stats(reset=True)
    stack.llamaparse_control(
        upload_429_next=2, upload_500_next=1, drop_callbacks_next=1,
        duplicate_callbacks_next=3, hold_callbacks=2,
    )  # fmt: skip
    stack.openai_control(fail_429_next=3, fail_500_next=2)
    files = corpus_files(corpus, plan)
    with stack.client() as client:
        uploads = [upload(client, f.name, f.path.read_bytes()) for f in files]
        uploads += upload_generated(client, range(1_000, 1_000 + plan.generated_docs))
        accepted = [u for u in uploads if u.job_id is not None]
        job_ids = [u.job_id for u in accepted if u.job_id]
        with StatusSampler(client, job_ids) as sampler:
            try:
                rows = stack.wait_terminal(job_ids, plan.reliability_timeout_s)
            except TimeoutError:
                rows = stack.jobs(job_ids)
    stats = stack.openai_stats()
    return {
        "reliability": _reliability(stack, files, uploads, rows),
        "embedding": _embedding(stack, stats, job_ids),
        "status_latency_ms": _latency(sampler),
    }


def _reliability(
    stack: Stack, files: list[CorpusFile], uploads: list[Upload], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    expect = {f.name: f.expect for f in files}
    by_job = {r["job_id"]: r for r in rows}
    counts = _row_counts(stack, [u.document_id for u in uploads if u.document_id])
    should, completed, mismatches = 0, 0, []
    for u in uploads:
        wanted = expect.get(u.label, "complete")  # generated documents must complete
        row = by_job.get(u.job_id or "")
        status = row["status"] if row else ("rejected" if u.job_id is None else "missing")
        error = (row or {}).get("last_error") or u.error
        chunks, vectors = counts.get(u.document_id or "", (0, 0))
        problem = check_outcome(wanted, status, error, chunks, vectors)
        if should_complete(wanted):
            should += 1
            completed += problem is None
        if problem:
            mismatches.append({"file": u.label, "problem": problem})
    lost = sum(1 for u in uploads if u.job_id and u.job_id not in by_job) + sum(
        1 for r in rows if r["status"] not in ("complete", "failed_parse", "failed_chunking",
                                                "failed_embedding")
    )  # fmt: skip
    return {
        "documents": should,
        "completed": completed,
        "success_rate": round(completed / should, 4) if should else 0.0,
        "lost": lost,
        "duplicated": _duplicated_rows(stack),
        "uploads": len(uploads),
        "expectation_mismatches": mismatches,
    }


def _row_counts(stack: Stack, document_ids: list[str]) -> dict[str, tuple[int, int]]:
    """(chunks the job says it made, searchable vector rows) per document."""
    found = stack.query(
        "SELECT j.document_id::text AS d,"
        " coalesce((j.progress->>'chunks_total')::int, 0) AS chunks,"
        " (SELECT count(*) FROM docingest.document_chunks c"
        "   WHERE c.document_id = j.document_id) AS vectors"
        " FROM docingest.upload_jobs j WHERE j.document_id = ANY(%s::uuid[])",
        (document_ids,),
    )
    return {r["d"]: (int(r["chunks"]), int(r["vectors"])) for r in found}


def _duplicated_rows(stack: Stack) -> int:
    """Rows beyond one per (document, ordinal[, model, version]) in every chunk table, and
    documents beyond one per (user, file hash)."""
    [row] = stack.query(
        "SELECT"
        " (SELECT count(*) - count(DISTINCT (document_id, chunk_ord, embed_model, embed_version))"
        "    FROM docingest.document_chunks)"
        " + (SELECT count(*) - count(DISTINCT (document_id, chunker_name, chunker_version,"
        "    chunk_ord)) FROM docingest.document_chunk_buffer)"
        " + (SELECT count(*) - count(DISTINCT (chunk_id, embed_model, embed_version))"
        "    FROM docingest.document_vector_buffer)"
        " + (SELECT count(*) - count(DISTINCT (user_id, file_sha256)) FROM docingest.documents)"
        " + (SELECT count(*) - count(DISTINCT document_id) FROM docingest.upload_jobs) AS extra"
    )
    return int(row["extra"])


def _embedding(stack: Stack, stats: dict[str, Any], job_ids: list[str]) -> dict[str, Any]:
    [row] = stack.query(
        "SELECT count(*) AS chunks, count(DISTINCT chunk_sha) AS texts"
        " FROM docingest.document_chunks c JOIN docingest.upload_jobs j USING (document_id)"
        " WHERE j.job_id = ANY(%s::uuid[])",
        (job_ids,),
    )
    chunks, texts = int(row["chunks"]), int(row["texts"])
    answered = int(stats.get("status_counts", {}).get("200", 0))
    inputs = int(stats.get("inputs", 0))
    return {
        "chunks": chunks,
        "distinct_texts": texts,
        "requests": int(stats.get("requests", 0)),
        "answered_requests": answered,
        "requests_per_1000_chunks": round(1000 * answered / chunks, 2) if chunks else 0.0,
        "batch_fill": round(inputs / (answered * EMBED_BATCH), 4) if answered else 0.0,
        "inputs_per_text": round(inputs / texts, 3) if texts else 0.0,
    }


def _latency(sampler: StatusSampler) -> dict[str, Any]:
    lat = sampler.latencies_ms
    if not lat:
        return {"p50": None, "p99": None, "reads": 0, "errors": sampler.errors}
    return {
        "p50": round(percentile(lat, 50), 2),
        "p99": round(percentile(lat, 99), 2),
        "reads": len(lat),
        "errors": sampler.errors,
        "samples": [round(x, 2) for x in lat],
    }


# --- recovery --------------------------------------------------------------------------


def recovery(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Seconds from each fault's end (or the kill) until the affected jobs complete."""
    stack.restart_workers(2)
    out: dict[str, Any] = {}
    out["worker_kill_s"] = _worker_kill(stack)
    out["postgres_restart_s"] = _postgres_restart(stack)
    out["parser_outage_s"] = _parser_outage(stack, plan.outage_s)
    out["embedder_outage_s"] = _embedder_outage(stack, plan.outage_s)
    out["lease_seconds"] = stack.settings.lease_seconds
    out["outage_length_s"] = plan.outage_s
    return {"recovery": out}


_seed = iter(range(100_000, 10**9))


def _fresh_docs(stack: Stack, n: int) -> list[str]:
    with stack.client() as client:
        ups = upload_generated(client, [next(_seed) for _ in range(n)])
    return [u.job_id for u in ups if u.job_id]


def _completed_after(stack: Stack, job_ids: list[str], t0: float, timeout_s: float) -> float:
    """Wait for `job_ids`; seconds from `t0` to the last completion, or -1 if any failed."""
    rows = stack.wait_terminal(job_ids, timeout_s)
    if any(r["status"] != "complete" for r in rows):
        return -1.0
    return round(float(max(r["updated"] for r in rows)) - t0, 2)


def _worker_kill(stack: Stack) -> float:
    stack.openai_control(latency_ms=2_000)  # hold jobs in the embedding stage
    job_ids = _fresh_docs(stack, 3)
    held = stack.kill_worker_holding(job_ids)
    killed_at = time.time()
    stack.openai_control(latency_ms=stack.settings.embed_latency_ms)
    recovered = _completed_after(stack, [held], killed_at, 180)
    _completed_after(stack, job_ids, killed_at, 180)
    return recovered


def _postgres_restart(stack: Stack) -> float:
    stack.openai_control(latency_ms=1_000)
    job_ids = _fresh_docs(stack, 3)
    stack.wait_claimed(job_ids, 60)
    stack.restart_postgres()
    back_at = time.time()
    stack.openai_control(latency_ms=stack.settings.embed_latency_ms)
    return _completed_after(stack, job_ids, back_at, 240)


def _parser_outage(stack: Stack, outage_s: float) -> float:
    end = time.time() + outage_s
    stack.llamaparse_control(outage_until=end)
    job_ids = _fresh_docs(stack, 3)
    _wait_until(end)
    return _completed_after(stack, job_ids, end, 240)


def _embedder_outage(stack: Stack, outage_s: float) -> float:
    stack.openai_control(fail_500_next=1_000_000)
    end = time.time() + outage_s
    job_ids = _fresh_docs(stack, 3)
    _wait_until(end)
    stack.openai_control(fail_500_next=0)
    ended = time.time()
    return _completed_after(stack, job_ids, ended, 240)


def _wait_until(t: float) -> None:
    """The outage's length is the fault itself, not a synchronization wait."""
    time.sleep(max(0.0, t - time.time()))


# --- predictability --------------------------------------------------------------------


def predictability(stack: Stack, plan: Plan) -> dict[str, Any]:
    """End-to-end seconds of same-size documents, one at a time on an idle stack.

    Each worker's first job loads the tokenizer; one warm-up document per worker is
    processed (concurrently) first and not counted.
    """
    workers, pages = 2, 30
    stack.restart_workers(workers)
    times = []
    with stack.client() as client:
        warm = upload_generated(client, [next(_seed) for _ in range(workers)], pages=pages)
        stack.wait_terminal([u.job_id for u in warm if u.job_id], 120)
        for _ in range(plan.predictability_docs):
            [u] = upload_generated(client, [next(_seed)], pages=pages)
            if u.job_id is None:
                raise RuntimeError(f"upload refused with HTTP {u.status_code}")
            [row] = stack.wait_terminal([u.job_id], 120)
            if row["status"] == "complete":
                times.append(row["updated"] - row["created"])
    mean = statistics.fmean(times) if times else 0.0
    cv = statistics.pstdev(times) / mean if len(times) > 1 and mean else None
    return {
        "predictability": {
            "cv": round(cv, 4) if cv is not None else None,
            "documents": len(times),
            "mean_s": round(mean, 3),
            "pages": pages,
            "warm_up_documents": workers,
            "samples_s": [round(t, 3) for t in times],
        }
    }


# --- scaling ---------------------------------------------------------------------------


def scaling(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Throughput at 1, 2, 4, 8 worker processes (one job slot and one embedding job each)
    with the fake embedder's latency set so that external I/O dominates, as in production.
    One embedding job per worker: batching across documents would fold all of a worker's
    documents into one request and hide the scaling this phase measures
    (bench/many_documents.py measures the batching).

    n workers get n x k documents at once. Throughput is measured in the steady state: the
    documents completed after the n-th completion, divided by the time from the n-th to
    the last completion. The first wave (process start, first claims, the parser's first
    queue) is excluded the same way at every n.
    """
    stack.openai_control(latency_ms=plan.scaling_embed_latency_ms)
    per_min, whole_run = [], []
    for n in plan.scaling_workers:
        stack.restart_workers(n, embedding_jobs=1)
        started = time.time()
        job_ids = _fresh_docs(stack, n * plan.scaling_docs_per_worker)
        rows = stack.wait_terminal(job_ids, 600)
        if any(r["status"] != "complete" for r in rows):
            raise RuntimeError(f"a job did not complete with {n} workers")
        done = sorted(float(r["updated"]) for r in rows)
        per_min.append(round(60 * (len(done) - n) / (done[-1] - done[n - 1]), 2))
        whole_run.append(round(60 * len(done) / (done[-1] - started), 2))
    stack.openai_control(latency_ms=stack.settings.embed_latency_ms)
    base = per_min[0]
    efficiency = [
        round(tp / (n * base), 3) for n, tp in zip(plan.scaling_workers, per_min, strict=True)
    ]
    return {
        "scaling": {
            "workers": list(plan.scaling_workers),
            "docs_per_min": per_min,
            "efficiency": efficiency,
            "docs_per_min_whole_run": whole_run,
            "embed_latency_ms": plan.scaling_embed_latency_ms,
            "docs_per_worker": plan.scaling_docs_per_worker,
            "measured": "steady state: completions after the n-th over the time from the"
            " n-th completion to the last",
        }
    }
