"""The API's response shapes (DESIGN.md §4), declared so `/openapi.json` shows every body a
client can get, errors included. Handlers still build plain dicts (`api/job_body.py`,
`store/search.py`); FastAPI checks each against its model on the way out, and the models
forbid unknown fields, so a field added to a body and not here fails the tests (500), never
ships undocumented.

Identifiers and timestamps are strings as sent (UUID text, ISO 8601 with offset); their
format is stated for clients, not re-parsed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from docingest.domain.states import JobStatus
from docingest.pipeline.document_kind import KINDS

_UUID: dict[str, Any] = {"format": "uuid"}
_TIME: dict[str, Any] = {"format": "date-time"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Body):
    code: str = Field(description="A stable, named error code (docs/api.md).")
    message: str = Field(description="What went wrong; never document text or tokens.")


class ErrorBody(_Body):
    """Every non-2xx answer of the API."""

    error: ErrorDetail


class Progress(_Body):
    chunks_total: int
    chunks_done: int
    embeds_total: int
    embeds_done: int
    percent: int = Field(ge=0, le=100, description="A monotone 0..100 estimate.")


class LastError(_Body):
    code: str | None
    message: str | None


class JobBody(_Body):
    job_id: str = Field(json_schema_extra=_UUID)
    document_id: str = Field(json_schema_extra=_UUID)
    status: JobStatus
    progress: Progress
    retry_count: int
    last_error: LastError | None
    created_at: str = Field(json_schema_extra=_TIME)
    updated_at: str = Field(json_schema_extra=_TIME)


class UploadAccepted(_Body):
    document_id: str = Field(json_schema_extra=_UUID)
    job_id: str = Field(json_schema_extra=_UUID)
    status: JobStatus
    duplicate: bool = Field(description="The same user uploaded the same bytes before.")


class DocumentSummary(_Body):
    document_id: str = Field(json_schema_extra=_UUID)
    filename: str
    mime: str
    bytes_len: int
    file_sha256: str
    created_at: str = Field(json_schema_extra=_TIME)
    job_id: str = Field(json_schema_extra=_UUID)
    status: JobStatus


class DocumentPage(_Body):
    documents: list[DocumentSummary]
    total: int
    limit: int
    offset: int


class DocumentDetail(DocumentSummary):
    chunks: int
    vectors: int
    job: JobBody


class SearchResult(_Body):
    document_id: str = Field(json_schema_extra=_UUID)
    chunk_id: str = Field(json_schema_extra=_UUID)
    chunk_ord: int
    text: str
    score: float
    filename: str = Field(description="The uploaded file's name, for citing.")
    pages: list[int] | None = Field(description="[first, last] page of the chunk, if known.")
    heading_path: list[str] = Field(description="The headings above the chunk, outermost first.")
    document_kind: str = Field(
        description="The kind read from the document's title.",
        json_schema_extra={"enum": list(KINDS)},
    )


class SearchResults(_Body):
    results: list[SearchResult]


class Health(_Body):
    status: Literal["ok"]


class Ready(_Body):
    status: Literal["ready"]
    schema_version: int = Field(alias="schema")


class Unavailable(_Body):
    status: Literal["unavailable"]
    reason: str
    schema_version: int | None = Field(default=None, alias="schema")
    head: int | None = None


class WebhookAck(_Body):
    """A callback taken (200, or 202 `woken` for a hint): what it did."""

    status: Literal["accepted", "duplicate", "already_applied", "not_waiting", "woken"]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses, and 422 (a malformed path, query or body;
    `api/errors.py` answers it with the error body, not FastAPI's own), answer with the
    error body."""
    return {status: {"model": ErrorBody} for status in sorted({*statuses, 422})}
