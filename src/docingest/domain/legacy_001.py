"""The 001 -> 002 status mapping of `../shared/legacy-001/MAPPING.md`, as pure functions.

A 001 document has one job row per stage; its position is the row with the most advanced
known stage (ties: latest `updated_at`). Where it lands in 002 also depends on what the
migration could carry: the parsed artifact (`parsed_path` + `parsed_sha256`) and the chunks
with their vectors (the "chunks rule").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from docingest.domain.states import JobStatus

#: stage order as in the CHECK list of the 001 schema
STAGES: tuple[str, ...] = (
    "queued",
    "job_validated",
    "parsing",
    "parsed",
    "parse_validated",
    "chunking",
    "chunks_buffered",
    "chunked",
    "embedding",
    "embeddings_buffered",
    "embedded",
)
STATES: frozenset[str] = frozenset({"queued", "working", "retryable", "done", "deadletter"})
#: the 001 schema fixes every vector at this dimension
DIMENSIONS = 1536

_PARSE = frozenset(STAGES[:5])
_CHUNK = frozenset(STAGES[5:8])


class Carry(StrEnum):
    """Where a document's carried chunks go in 002."""

    NONE = "none"  # no chunks carried: the document is re-chunked (or re-parsed)
    BUFFERS = "buffers"  # document_chunk_buffer + document_vector_buffer
    PROMOTED = "promoted"  # document_chunks (searchable), buffers empty


@dataclass(frozen=True)
class LegacyJob:
    job_id: UUID
    stage: str
    state: str
    updated_at: datetime | None
    retry_count: int
    last_error: dict[str, Any] | None


@dataclass(frozen=True)
class ChunkSupport:
    """What the migration could carry for one document.

    `chunks`: valid chunk rows carried; `rejected`: chunk rows that could not be carried
    (bad hash, bad id); `with_vector`: carried chunks holding a valid vector of the
    document's model/version."""

    chunks: int = 0
    rejected: int = 0
    with_vector: int = 0

    @property
    def usable(self) -> bool:
        """Chunks can be carried only as a whole set: one bad row sends the document back
        to re-chunking (its text is no longer trustworthy as a set)."""
        return self.chunks > 0 and self.rejected == 0

    @property
    def all_embedded(self) -> bool:
        return self.usable and self.with_vector == self.chunks


@dataclass(frozen=True)
class Target:
    status: JobStatus
    resume_status: JobStatus | None
    carry: Carry


def position(jobs: Iterable[LegacyJob]) -> LegacyJob | None:
    """The job that describes the document: most advanced known stage, then latest update.
    Rows with an unknown stage or state are left out (the caller reports them)."""
    known = [j for j in jobs if j.stage in STAGES and j.state in STATES]
    if not known:
        return None
    return max(
        known,
        key=lambda j: (
            STAGES.index(j.stage),
            j.updated_at.timestamp() if j.updated_at else float("-inf"),
        ),
    )


def _reparse_or(status: JobStatus, has_parsed: bool) -> JobStatus:
    """`*` in MAPPING.md: a parsed position needs the parsed artifact, else re-parse."""
    return status if has_parsed else JobStatus.PARSE_QUEUED


def _fallback(has_parsed: bool) -> JobStatus:
    """No carried chunks: re-chunk from the parsed artifact, or re-parse from the raw file."""
    return _reparse_or(JobStatus.PARSE_VALIDATED, has_parsed)


def map_status(job: LegacyJob | None, *, has_parsed: bool, support: ChunkSupport) -> Target:
    """The 002 status (and resume point, and chunk placement) for a 001 position."""
    if job is None:  # no usable job row: start over from the raw file
        return Target(JobStatus.PARSE_QUEUED, None, Carry.NONE)
    stage, dead = job.stage, job.state == "deadletter"
    if stage in _PARSE:
        if dead:
            return Target(JobStatus.FAILED_PARSE, JobStatus.PARSE_QUEUED, Carry.NONE)
        if stage == "parsed":
            return Target(_reparse_or(JobStatus.PARSED, has_parsed), None, Carry.NONE)
        if stage == "parse_validated":
            return Target(_fallback(has_parsed), None, Carry.NONE)
        return Target(JobStatus.PARSE_QUEUED, None, Carry.NONE)
    if stage in _CHUNK:
        if dead:
            return Target(JobStatus.FAILED_CHUNKING, _fallback(has_parsed), Carry.NONE)
        return Target(_fallback(has_parsed), None, Carry.NONE)
    # embedding stages: the chunks rule
    if not support.usable:
        if dead:
            return Target(JobStatus.FAILED_EMBEDDING, _fallback(has_parsed), Carry.NONE)
        return Target(_fallback(has_parsed), None, Carry.NONE)
    if dead:
        return Target(JobStatus.FAILED_EMBEDDING, JobStatus.CHUNKS_STORED, Carry.BUFFERS)
    if not support.all_embedded:
        return Target(JobStatus.CHUNKS_STORED, None, Carry.BUFFERS)
    if stage == "embedded" and job.state != "done":
        return Target(JobStatus.EMBEDDINGS_STORED, None, Carry.BUFFERS)
    return Target(JobStatus.COMPLETE, None, Carry.PROMOTED)


def legacy_error(job: LegacyJob) -> dict[str, Any] | None:
    """The 001 `last_error`, shaped as a 002 `{code, message}` with the original kept."""
    if not job.last_error:
        return None
    err = job.last_error
    return {
        "code": str(err.get("code") or "legacy_001_error"),
        "message": str(err.get("message") or "error carried over from the 001 system"),
        "stage": job.stage,
        "legacy_001": err,
    }


def version_map(items: Iterable[str]) -> dict[str, str]:
    """`OLD=NEW` pairs (`--embed-version-map`) as {001 embed_version: docingest embed_version}.

    001 labels its OpenAI vectors `text-embedding-3-small` / `1`; docingest's OpenAI embedder
    calls the same vectors `d1536`. Vectors are reused and searched by exact model/version, so
    without `1=d1536` carried vectors would sit beside, not under, the configured embedder."""
    out: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ValueError(f"expected OLD=NEW, got {item!r}")
        if out.get(old, new) != new:
            raise ValueError(f"embed_version {old!r} mapped twice")
        out[old] = new
    return out


# 001 records files as `storage://raw/{user_id}/{document_id}.pdf`; an export of its
# buckets holds them at `DIR/raw/...` (ops/blob_import.py, testing/legacy001.py).
LEGACY_SCHEME = "storage://"


def is_legacy_path(path: str | None) -> bool:
    return bool(path) and str(path).startswith(LEGACY_SCHEME)


def export_path(root: Path, legacy_path: str) -> Path | None:
    """Where a `storage://` path lies in an export, or None if it would leave the export."""
    rel = legacy_path.removeprefix(LEGACY_SCHEME)
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return root.joinpath(*parts)
