"""The parsed artifact, whoever produced it (local parser, LlamaParse, a signed callback):
normalized markdown with text in it, at most `max_chars` characters, stored under a key that
is the job's own and content-addressed within it (`parsed/{document}/{job}/{sha256}.md.enc`):
a repeat of the same stage writes nothing new, and an artifact written after its document
was deleted can be removed without touching any other job's (worker/cleanup.py)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from docingest.domain.errors import ErrorCode, ParseError
from docingest.pipeline.hashing import parsed_sha256
from docingest.pipeline.normalize import normalize_markdown

PAGE_MARKER_PREFIX = "<!-- page "


@dataclass(frozen=True)
class ParsedArtifact:
    markdown: str  # normalized
    sha256: str
    key: str  # blob key


def has_text(markdown: str) -> bool:
    return any(
        line.strip() and not line.startswith(PAGE_MARKER_PREFIX) for line in markdown.splitlines()
    )


def job_prefix(document_id: UUID, job_id: UUID) -> str:
    """Where every parsed artifact of one job is stored."""
    return f"parsed/{document_id}/{job_id}/"


def prepare(
    document_id: UUID, job_id: UUID, markdown: str, max_chars: int | None = None
) -> ParsedArtifact:
    """Normalize a parser's markdown; ParseError(no_text) when nothing but page markers is
    left, ParseError(text_limit) when it is longer than `max_chars` (checked before and after
    normalizing, so an oversized input is never normalized)."""
    if max_chars is not None and len(markdown) > 2 * max_chars:
        raise _too_long(max_chars)
    normalized = normalize_markdown(markdown)
    if max_chars is not None and len(normalized) > max_chars:
        raise _too_long(max_chars)
    if not has_text(normalized):
        raise ParseError(ErrorCode.NO_TEXT, "no text layer found (OCR is out of scope)")
    sha = parsed_sha256(normalized)
    return ParsedArtifact(normalized, sha, f"{job_prefix(document_id, job_id)}{sha}.md.enc")


def _too_long(max_chars: int) -> ParseError:
    return ParseError(ErrorCode.TEXT_LIMIT, f"extracted text exceeds {max_chars} characters")
