"""The job status body the API answers with (DESIGN.md §4), built from a stored job."""

from __future__ import annotations

from typing import Any

from docingest.domain.states import progress_percent
from docingest.store.records import Job


def job_body(job: Job) -> dict[str, Any]:
    """The job status body of DESIGN.md §4."""
    p = job.progress
    return {
        "job_id": str(job.job_id),
        "document_id": str(job.document_id),
        "status": job.status.value,
        "progress": {
            "chunks_total": p.get("chunks_total", 0),
            "chunks_done": p.get("chunks_done", 0),
            "embeds_total": p.get("embeds_total", 0),
            "embeds_done": p.get("embeds_done", 0),
            "percent": progress_percent(
                job.status,
                p.get("chunks_total", 0),
                p.get("embeds_total", 0),
                p.get("embeds_done", 0),
            ),
        },
        "retry_count": job.retry_count,
        "last_error": (
            {"code": job.last_error.get("code"), "message": job.last_error.get("message")}
            if job.last_error
            else None
        ),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }
