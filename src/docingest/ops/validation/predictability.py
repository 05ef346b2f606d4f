"""Predictability on real documents: every real corpus document that must complete, one at a
time on an idle stack with the jittered fakes, timed from upload to `complete` on the
database's clock. A document that does not complete fails the target; nothing is dropped.

Each document is new to the system, as a user's first upload of it is: the reliability phase
stored the same corpus earlier, so every document then stored is deleted first through the
API (`DELETE /v1/documents/{id}`, its owner's token). Otherwise each chunk's vector would be
copied from the earlier upload, the jittered embedder would never be called, and the run
would time a re-upload (no embedding requests) instead of an ingestion.

Reported per document: pages (MANIFEST), chunks, end-to-end seconds, seconds per page, and
the parser's share (from the job's own `job.parse_queued` -> `job.parsed` events).
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path
from typing import Any

from docingest.ops.validation.corpus_manifest import should_complete
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.reliability import corpus_files, percentile
from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import delete, fresh_documents, upload

WORKERS = 2


def run(stack: Stack, plan: Plan, corpus: Path) -> dict[str, Any]:
    stack.restart_workers(WORKERS)
    stack.reset_latencies()
    forgotten = _delete_stored_documents(stack)
    # each worker's first job loads the tokenizer: one generated document per worker first
    stack.wait_terminal(fresh_documents(stack, WORKERS), 180)
    files = [f for f in corpus_files(corpus, plan, hostile=False) if should_complete(f.expect)]
    docs: list[dict[str, Any]] = []
    with stack.client() as client:
        for f in files:
            up = upload(client, f.name, f.path.read_bytes())
            if up.job_id is None:
                docs.append({"file": f.name, "status": f"rejected {up.status_code}"})
                continue
            [row] = stack.wait_terminal([up.job_id], plan.predictability_timeout_s)
            parser_seconds = stack.llamaparse_stats()["job_seconds"]
            timing = _timing(stack, up.job_id, row, parser_seconds)
            if f.pages:
                timing["s_per_page"] = round(timing["seconds"] / f.pages, 4)
            docs.append({"file": f.name, "pages": f.pages, **timing})
    done = [d for d in docs if d["status"] == "complete"]
    per_page = [d["s_per_page"] for d in done if "s_per_page" in d]
    ratios = [d["e2e_per_provider_s"] for d in done if "e2e_per_provider_s" in d]
    return {
        "predictability": {
            "documents": len(docs),
            "earlier_documents_deleted": forgotten,
            "completed": len(done),
            "incomplete": [
                {"file": d["file"], "status": d["status"]} for d in docs if d not in done
            ],
            "s_per_page": _distribution(per_page),
            "e2e_per_provider_s": _distribution(ratios),
            "ours_s": _distribution([d["ours_s"] for d in done if "ours_s" in d]),
            "per_document": docs,
            "settings": {**stack.describe_settings(), "workers": WORKERS},
        }
    }


def _delete_stored_documents(stack: Stack) -> int:
    """Delete every stored document through the API, each with its owner's token; how many."""
    owners: dict[str, list[str]] = {}
    for row in stack.query(
        "SELECT document_id::text AS d, user_id::text AS u FROM docingest.documents"
    ):
        owners.setdefault(row["u"], []).append(row["d"])
    deleted = 0
    for user, document_ids in owners.items():
        with stack.client(uuid.UUID(user)) as client:
            for document_id in document_ids:
                status = delete(client, document_id)
                if status != 204:
                    raise RuntimeError(f"deleting an earlier document answered {status}")
                deleted += 1
    return deleted


def _timing(
    stack: Stack, job_id: str, row: dict[str, Any], parser_seconds: dict[str, float]
) -> dict[str, Any]:
    """End-to-end seconds, and how much of it the providers took: the parser's own measure
    of the job (the fake's `job_seconds`) and the time the worker waited on its embedding
    calls (the union of their spans: two requests in flight together count once)."""
    [job] = stack.query(
        "SELECT progress, parse_external_id FROM docingest.upload_jobs WHERE job_id = %s::uuid",
        (job_id,),
    )
    progress = job["progress"] or {}
    seconds = float(row["updated"]) - float(row["created"])
    parser_s = parser_seconds.get(str(job["parse_external_id"]))
    embedder_s = float(progress.get("embed_provider_s", 0.0))
    out: dict[str, Any] = {
        "status": row["status"],
        "chunks": progress.get("chunks_total"),
        "seconds": round(seconds, 3),
        "parser_s": parser_s,
        "embedder_s": round(embedder_s, 3),
    }
    if parser_s is not None and row["status"] == "complete":
        providers = parser_s + embedder_s
        out["ours_s"] = round(seconds - providers, 3)
        out["e2e_per_provider_s"] = round(seconds / providers, 4)
    return out


def _distribution(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    mean = statistics.fmean(values)
    return {
        "n": len(values),
        "min": round(min(values), 4),
        "p50": round(percentile(values, 50), 4),
        "p90": round(percentile(values, 90), 4),
        "max": round(max(values), 4),
        "mean": round(mean, 4),
        "cv": round(statistics.pstdev(values) / mean, 4) if len(values) > 1 and mean else None,
    }
