"""The per-job state machine of DESIGN.md §2, as data.

`JobStatus` values match the Postgres enum `docingest.job_status` (a test keeps them in
sync). Transitions are guarded twice: here (`check_transition`) and in SQL, where every
status change is an `UPDATE ... WHERE status = <from> AND claimed_by = <me> AND attempt = <n>`.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    UPLOADED = "uploaded"
    PARSE_QUEUED = "parse_queued"
    PARSED = "parsed"
    PARSE_VALIDATED = "parse_validated"
    CHUNKING = "chunking"
    CHUNKS_STORED = "chunks_stored"
    EMBEDDING_QUEUED = "embedding_queued"
    EMBEDDING_IN_PROGRESS = "embedding_in_progress"
    EMBEDDINGS_STORED = "embeddings_stored"
    COMPLETE = "complete"
    FAILED_PARSE = "failed_parse"
    FAILED_CHUNKING = "failed_chunking"
    FAILED_EMBEDDING = "failed_embedding"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_failed(self) -> bool:
        return self in FAILED


PIPELINE: tuple[JobStatus, ...] = (
    JobStatus.UPLOADED,
    JobStatus.PARSE_QUEUED,
    JobStatus.PARSED,
    JobStatus.PARSE_VALIDATED,
    JobStatus.CHUNKING,
    JobStatus.CHUNKS_STORED,
    JobStatus.EMBEDDING_QUEUED,
    JobStatus.EMBEDDING_IN_PROGRESS,
    JobStatus.EMBEDDINGS_STORED,
    JobStatus.COMPLETE,
)
FAILED: frozenset[JobStatus] = frozenset(
    {JobStatus.FAILED_PARSE, JobStatus.FAILED_CHUNKING, JobStatus.FAILED_EMBEDDING}
)
TERMINAL: frozenset[JobStatus] = FAILED | {JobStatus.COMPLETE}
#: statuses a worker may claim (everything that is not terminal)
CLAIMABLE: tuple[JobStatus, ...] = PIPELINE[:-1]

_FAILURE_OF: dict[JobStatus, JobStatus] = {
    JobStatus.UPLOADED: JobStatus.FAILED_PARSE,
    JobStatus.PARSE_QUEUED: JobStatus.FAILED_PARSE,
    JobStatus.PARSED: JobStatus.FAILED_PARSE,
    JobStatus.PARSE_VALIDATED: JobStatus.FAILED_CHUNKING,
    JobStatus.CHUNKING: JobStatus.FAILED_CHUNKING,
    JobStatus.CHUNKS_STORED: JobStatus.FAILED_EMBEDDING,
    JobStatus.EMBEDDING_QUEUED: JobStatus.FAILED_EMBEDDING,
    JobStatus.EMBEDDING_IN_PROGRESS: JobStatus.FAILED_EMBEDDING,
    JobStatus.EMBEDDINGS_STORED: JobStatus.FAILED_EMBEDDING,
}


class IllegalTransition(ValueError):
    def __init__(self, src: JobStatus, dst: JobStatus) -> None:
        super().__init__(f"illegal transition {src} -> {dst}")
        self.src, self.dst = src, dst


def failure_status(status: JobStatus) -> JobStatus:
    """The `failed_*` status a job at `status` ends in when its current stage fails."""
    if status not in _FAILURE_OF:
        raise IllegalTransition(status, JobStatus.FAILED_PARSE)
    return _FAILURE_OF[status]


def next_status(status: JobStatus) -> JobStatus:
    """The status a job moves to when the stage it is at succeeds."""
    if status.is_terminal:
        raise IllegalTransition(status, status)
    return PIPELINE[PIPELINE.index(status) + 1]


def is_legal(src: JobStatus, dst: JobStatus) -> bool:
    if src.is_terminal:
        # only a retry (operator action) leaves a failed state, back to where it stopped
        return src.is_failed and dst in CLAIMABLE and failure_status(dst) == src
    return dst == next_status(src) or dst == failure_status(src)


def check_transition(src: JobStatus, dst: JobStatus) -> None:
    if not is_legal(src, dst):
        raise IllegalTransition(src, dst)


def progress_percent(
    status: JobStatus, chunks_total: int, embeds_total: int, embeds_done: int
) -> int:
    """A monotone 0..100 estimate: parse 0-20, chunk 20-30, embed 30-95, promote 95-100."""
    del chunks_total  # chunking is one step; its count does not move the estimate
    if status == JobStatus.COMPLETE:
        return 100
    if status.is_failed:
        return 0
    base = {
        JobStatus.UPLOADED: 0,
        JobStatus.PARSE_QUEUED: 5,
        JobStatus.PARSED: 20,
        JobStatus.PARSE_VALIDATED: 20,
        JobStatus.CHUNKING: 25,
        JobStatus.CHUNKS_STORED: 30,
        JobStatus.EMBEDDING_QUEUED: 30,
        JobStatus.EMBEDDING_IN_PROGRESS: 30,
        JobStatus.EMBEDDINGS_STORED: 95,
    }[status]
    if status == JobStatus.EMBEDDING_IN_PROGRESS and embeds_total > 0:
        return base + (65 * min(embeds_done, embeds_total)) // embeds_total
    return base
