"""The reliability run of `docingest validate`: the corpus and generated documents through
the stack while both fakes inject faults, then completion, loss, what each corpus file
ended as, embedding spend, independently measured duplicates and status-read latency.

Every number comes from what the stack did: job rows (timestamps on the database's clock),
the fake services' own counters, and answers over HTTP. Nothing is estimated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from docingest.domain.states import TERMINAL
from docingest.ops.validation import duplicates, faults
from docingest.ops.validation.corpus_manifest import (
    CorpusFile,
    check_outcome,
    read_manifest,
    should_complete,
)
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import StatusSampler, Upload, upload, upload_generated


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def corpus_files(corpus: Path, plan: Plan, *, hostile: bool | None = None) -> list[CorpusFile]:
    """The corpus files the plan pushes (size-capped; hostile ones unless told otherwise)."""
    with_hostile = plan.hostile if hostile is None else hostile
    return [
        f
        for f in read_manifest(corpus)
        if (with_hostile or not f.name.startswith("hostile/"))
        and (plan.corpus_max_bytes is None or f.size <= plan.corpus_max_bytes)
    ]


def run(stack: Stack, plan: Plan, corpus: Path) -> dict[str, Any]:
    """Faults: parser upload 429s and 500s, dropped callbacks (found by the reconciler after
    DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS), duplicated and reordered callbacks, embedder
    429s and 500s."""
    stack.restart_workers(plan.reliability_workers)
    stack.openai_stats(reset=True)
    parser_armed = {
        "upload_429": 2, "upload_500": 1, "drop_callbacks": plan.dropped_callbacks,
        "duplicate_callbacks": 3,
    }  # fmt: skip
    embedder_armed = {"429": 3, "500": 2}
    parser_before = stack.llamaparse_stats()["faults_injected"]
    stack.llamaparse_control(**{f"{k}_next": v for k, v in parser_armed.items()}, hold_callbacks=2)
    stack.openai_control(fail_429_next=3, fail_500_next=2)
    files = corpus_files(corpus, plan)
    with stack.client() as client:
        uploads = [upload(client, f.name, f.path.read_bytes()) for f in files]
        uploads += upload_generated(client, range(1_000, 1_000 + plan.generated_docs))
        job_ids = [u.job_id for u in uploads if u.job_id]
        with StatusSampler(client, job_ids) as sampler:
            try:
                rows = stack.wait_terminal(job_ids, plan.reliability_timeout_s)
            except TimeoutError:
                rows = stack.jobs(job_ids)
    stats = stack.openai_stats()
    parser_after = stack.llamaparse_stats()["faults_injected"]
    served = [
        *faults.counted("reliability", "parser", parser_armed, parser_before, parser_after),
        faults.Fault(
            "reliability", "parser reordered_callbacks", 2,
            faults.served_since(parser_before, parser_after, "reordered_callbacks"),
            "fake_llamaparse /stats faults_injected",
        ),
        *faults.counted("reliability", "embedder", embedder_armed, {}, stats["faults_injected"]),
    ]  # fmt: skip
    completed = [r["document_id"] for r in rows if r["status"] == "complete"]
    return {
        "reliability": {**_outcomes(stack, files, uploads, rows), "settings": _settings(stack)},
        "duplicates": {
            **duplicates.billing(stats, _distinct_texts(stack, completed)),
            **duplicates.rechunk(stack.dsn, stack.effective_settings(), completed),
        },
        "embedding": _embedding(stack, stats, job_ids),
        "status_latency_ms": _latency(sampler),
        "faults": faults.table(served),
    }


def _settings(stack: Stack) -> dict[str, Any]:
    return {**stack.describe_settings(), "workers": stack.worker_count}


def _outcomes(
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
        1 for r in rows if r["status"] not in TERMINAL
    )
    return {
        "documents": should,
        "completed": completed,
        "success_rate": round(completed / should, 4) if should else 0.0,
        "lost": lost,
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


def _distinct_texts(stack: Stack, document_ids: list[str]) -> int:
    [row] = stack.query(
        "SELECT count(DISTINCT chunk_sha) AS n FROM docingest.document_chunks"
        " WHERE document_id = ANY(%s::uuid[])",
        (document_ids,),
    )
    return int(row["n"])


def _embedding(stack: Stack, stats: dict[str, Any], job_ids: list[str]) -> dict[str, Any]:
    [row] = stack.query(
        "SELECT count(*) AS chunks FROM docingest.document_chunks c"
        " JOIN docingest.upload_jobs j USING (document_id) WHERE j.job_id = ANY(%s::uuid[])",
        (job_ids,),
    )
    chunks = int(row["chunks"])
    answered = int(stats.get("status_counts", {}).get("200", 0))
    inputs = int(stats.get("inputs", 0))
    batch = stack.effective_settings().embed_batch_size
    return {
        "chunks": chunks,
        "requests": int(stats.get("requests", 0)),
        "answered_requests": answered,
        "requests_per_1000_chunks": round(1000 * answered / chunks, 2) if chunks else 0.0,
        "batch_fill": round(inputs / (answered * batch), 4) if answered else 0.0,
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
