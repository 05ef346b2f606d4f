"""The parsed artifact, whoever produced it (local parser, LlamaParse, a signed callback):
normalized markdown with text in it, stored under a content-addressed key."""

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


def prepare(document_id: UUID, markdown: str) -> ParsedArtifact:
    """Normalize a parser's markdown; ParseError(no_text) when nothing but page markers is left."""
    normalized = normalize_markdown(markdown)
    if not has_text(normalized):
        raise ParseError(ErrorCode.NO_TEXT, "no text layer found (OCR is out of scope)")
    sha = parsed_sha256(normalized)
    return ParsedArtifact(normalized, sha, f"parsed/{document_id}/{sha}.md.enc")
