"""Frozen records built from database rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from docingest.domain.states import JobStatus, progress_percent


@dataclass(frozen=True)
class Job:
    job_id: UUID
    user_id: UUID
    document_id: UUID
    status: JobStatus
    raw_path: str
    parsed_path: str | None
    parsed_sha256: str | None
    parser_name: str | None
    parser_version: str | None
    chunks_version: str | None
    embed_model: str | None
    embed_version: str | None
    progress: dict[str, int]
    retry_count: int
    last_error: dict[str, Any] | None
    resume_status: JobStatus | None
    attempt: int
    claimed_by: str | None
    correlation_id: UUID
    created_at: datetime
    updated_at: datetime
    # the remote parse path (migration 0003)
    parse_external_id: str | None = None
    parse_submitted_at: datetime | None = None
    parse_resubmits: int = 0
    callback_token_sha256: str | None = None
    user_retries: int = 0  # migration 0007

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            job_id=row["job_id"],
            user_id=row["user_id"],
            document_id=row["document_id"],
            status=JobStatus(row["status"]),
            raw_path=row["raw_path"],
            parsed_path=row["parsed_path"],
            parsed_sha256=row["parsed_sha256"],
            parser_name=row["parser_name"],
            parser_version=row["parser_version"],
            chunks_version=row["chunks_version"],
            embed_model=row["embed_model"],
            embed_version=row["embed_version"],
            progress={k: int(v) for k, v in (row["progress"] or {}).items()},
            retry_count=row["retry_count"],
            last_error=row["last_error"],
            resume_status=JobStatus(row["resume_status"]) if row["resume_status"] else None,
            attempt=row["attempt"],
            claimed_by=row["claimed_by"],
            correlation_id=row["correlation_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            parse_external_id=row.get("parse_external_id"),
            parse_submitted_at=row.get("parse_submitted_at"),
            parse_resubmits=row.get("parse_resubmits") or 0,
            callback_token_sha256=row.get("callback_token_sha256"),
            user_retries=row.get("user_retries") or 0,
        )

    def to_api(self) -> dict[str, Any]:
        """The job status body of DESIGN.md §4."""
        p = self.progress
        return {
            "job_id": str(self.job_id),
            "document_id": str(self.document_id),
            "status": self.status.value,
            "progress": {
                "chunks_total": p.get("chunks_total", 0),
                "chunks_done": p.get("chunks_done", 0),
                "embeds_total": p.get("embeds_total", 0),
                "embeds_done": p.get("embeds_done", 0),
                "percent": progress_percent(
                    self.status,
                    p.get("chunks_total", 0),
                    p.get("embeds_total", 0),
                    p.get("embeds_done", 0),
                ),
            },
            "retry_count": self.retry_count,
            "last_error": (
                {"code": self.last_error.get("code"), "message": self.last_error.get("message")}
                if self.last_error
                else None
            ),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Document:
    document_id: UUID
    user_id: UUID
    filename: str
    mime: str
    bytes_len: int
    file_sha256: str
    raw_path: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        return cls(
            document_id=row["document_id"],
            user_id=row["user_id"],
            filename=row["filename"],
            mime=row["mime"],
            bytes_len=row["bytes_len"],
            file_sha256=row["file_sha256"],
            raw_path=row["raw_path"],
            created_at=row["created_at"],
        )
