"""The body of the signed parse callback (DESIGN.md §5), validated without I/O.

```
{"job_id", "document_id", "status": "parsed",
 "artifacts": [{"type": "markdown", "content", "sha256", "bytes"}],
 "meta": {"parser_name", "parser_version"}}
```
Every artifact's `sha256`/`bytes` must describe its UTF-8 content; exactly one is markdown.
Rejections carry an HTTP status and a stable reason, never any of the body's text.

Nothing is parsed before the signature is verified: the signing key is per job, so the job id
is found first by a linear scan of the raw bytes (`claimed_job_id`: exactly one top-level
style `"job_id": "<uuid>"` pair); only a body whose signature verifies under that job's key is
parsed (`load`, depth-checked first), and its parsed `job_id` must be the scanned one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from docingest.domain.json_guard import too_deep

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LABEL = re.compile(r"^[A-Za-z0-9_.+\-]{1,64}$")
_JOB_ID_PAIR = re.compile(rb'"job_id"\s*:\s*"([^"\\]{1,64})"')


class CallbackRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SeedCallback:
    job_id: UUID
    document_id: UUID
    markdown: str
    parser_name: str
    parser_version: str


def claimed_job_id(raw: bytes) -> UUID:
    """The job id the body claims, found without parsing it (the signing key depends on it).
    No such pair, several different ones, or not a UUID: unverifiable (401)."""
    found = {m.group(1) for m in _JOB_ID_PAIR.finditer(raw)}
    job_id = _uuid(found.pop().decode("ascii", "replace")) if len(found) == 1 else None
    if job_id is None:
        raise CallbackRejected(401, "unverifiable_body")
    return job_id


def load(raw: bytes, job_id: UUID) -> dict[str, Any]:
    """The JSON object of a body whose signature verified for `job_id`: not too deep, an
    object, and naming that job (else 422: signed, but not a callback we can use)."""
    if too_deep(raw):
        raise CallbackRejected(422, "malformed_body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CallbackRejected(422, "malformed_body") from None
    if not isinstance(body, dict) or _uuid(body.get("job_id")) != job_id:
        raise CallbackRejected(422, "malformed_body")
    return body


def parse(body: dict[str, Any], job_id: UUID) -> SeedCallback:
    """The validated callback (call after the signature was verified)."""
    document_id = _uuid(body.get("document_id"))
    if document_id is None or body.get("status") != "parsed":
        raise CallbackRejected(422, "malformed_body")
    artifacts = body.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        raise CallbackRejected(422, "malformed_body")
    markdown = [_checked_artifact(a) for a in artifacts]
    found = [content for kind, content in markdown if kind == "markdown"]
    if len(found) != 1:
        raise CallbackRejected(422, "malformed_body")
    meta = body.get("meta")
    name = meta.get("parser_name") if isinstance(meta, dict) else None
    version = meta.get("parser_version") if isinstance(meta, dict) else None
    if not _label(name) or not _label(version):
        raise CallbackRejected(422, "malformed_body")
    assert isinstance(name, str) and isinstance(version, str)
    return SeedCallback(job_id, document_id, found[0], name, version)


def _checked_artifact(artifact: object) -> tuple[str, str]:
    if not isinstance(artifact, dict):
        raise CallbackRejected(422, "malformed_body")
    kind, content = artifact.get("type"), artifact.get("content")
    sha, size = artifact.get("sha256"), artifact.get("bytes")
    if not (
        isinstance(kind, str)
        and isinstance(content, str)
        and isinstance(sha, str)
        and _SHA256.match(sha)
        and isinstance(size, int)
        and not isinstance(size, bool)
    ):
        raise CallbackRejected(422, "malformed_body")
    data = content.encode("utf-8", "surrogatepass")
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise CallbackRejected(422, "artifact_mismatch")
    return kind, content


def _uuid(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def _label(value: object) -> bool:
    return isinstance(value, str) and _LABEL.match(value) is not None


def build(
    job_id: UUID, document_id: UUID, markdown: str, parser_name: str, parser_version: str
) -> bytes:
    """A seed callback body (used by senders: the fake parser's relay mode, tests)."""
    data = markdown.encode("utf-8")
    body = {
        "job_id": str(job_id),
        "document_id": str(document_id),
        "status": "parsed",
        "artifacts": [
            {
                "type": "markdown",
                "content": markdown,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        ],
        "meta": {"parser_name": parser_name, "parser_version": parser_version},
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
