"""The row-by-row checks of a 001 batch for `docingest migrate-001` (ops/migrate_001.py):
documents with a usable sha256 and size, chunks whose id and chunk_sha recompute from their
key and text, vectors of 001's dimension that fit halfvec, pending vectors of carried chunks
agreeing with the live ones. Every row refused becomes a `Problem` with its 001 id and a
reason; what passes is gathered per document (`DocChunks`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from docingest.domain import legacy_001 as mapping
from docingest.domain.legacy_001 import ChunkSupport
from docingest.ops.legacy_source import (
    LegacyChunk,
    LegacyDocument,
    LegacyPendingVector,
    LegacySource,
)
from docingest.pipeline import hashing, ids, vector_wire

_SHA256_HEX = frozenset("0123456789abcdef")
ModelKey = tuple[str, str]


@dataclass(frozen=True)
class Problem:
    id: str
    reason: str


@dataclass
class Summary:
    batch: UUID
    documents: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    chunks: int = 0  # chunk rows carried (valid and placed), counted on every run
    written: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    committed: bool = False

    def problem(self, row_id: UUID | str, reason: str) -> None:
        self.problems.append(Problem(str(row_id), reason))

    def to_json(self) -> dict[str, Any]:
        """The `--json` shape of DESIGN.md / issue 5, exactly."""
        return {
            "batch": str(self.batch),
            "documents": self.documents,
            "by_status": dict(sorted(self.by_status.items())),
            "problems": [{"id": p.id, "reason": p.reason} for p in self.problems],
        }


@dataclass(frozen=True)
class Vector:
    sha: str  # of the vector as stored (float16-rounded)
    data: bytes  # pgvector `halfvec` wire format


@dataclass
class DocChunks:
    """What one document's 001 chunks amount to, built while streaming them."""

    valid: set[UUID] = field(default_factory=set)
    rows: list[LegacyChunk] = field(default_factory=list)  # the valid ones, in order
    rejected: int = 0
    chunker: tuple[str, str] | None = None
    live_models: Counter[ModelKey] = field(default_factory=Counter)
    vectors: dict[UUID, dict[ModelKey, Vector]] = field(default_factory=dict)

    def model(self) -> ModelKey | None:
        """The document's model/version: the one most of its live vectors use."""
        if not self.live_models:
            return None
        return min(self.live_models.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def support(self) -> ChunkSupport:
        model = self.model()
        embedded = sum(1 for c in self.valid if model in self.vectors.get(c, {}))
        return ChunkSupport(len(self.valid), self.rejected, embedded)


def valid_document(doc: LegacyDocument, summary: Summary) -> bool:
    sha = (doc.file_sha256 or "").lower()
    if len(sha) != 64 or not set(sha) <= _SHA256_HEX or doc.bytes_len <= 0:
        summary.problem(doc.document_id, "invalid_document: file_sha256 or bytes_len unusable")
        return False
    return True


def read_chunks(
    source: LegacySource, doc_ids: list[UUID], versions: dict[str, str], summary: Summary
) -> dict[UUID, DocChunks]:
    """The documents' chunks and vectors as checked: live ones first, then the pending
    vectors of the chunks carried."""
    chunks = {d: DocChunks() for d in doc_ids}
    for c in source.chunks(doc_ids):
        _take_chunk(c, chunks[c.document_id], versions, summary)
    for p in source.pending_vectors(doc_ids):
        _take_pending(p, chunks[p.document_id], versions, summary)
    return chunks


def _take_chunk(c: LegacyChunk, doc: DocChunks, versions: dict[str, str], summary: Summary) -> None:
    reason = chunk_problem(c)
    if reason is not None:
        summary.problem(c.chunk_id, reason)
        doc.rejected += 1
        return
    if c.chunk_id in doc.valid:  # only where 001's primary key was dropped
        summary.problem(c.chunk_id, "duplicate_chunk: a second row with this chunk_id")
        return
    if doc.chunker is None:
        doc.chunker = (c.chunker_name, c.chunker_version)
    doc.valid.add(c.chunk_id)
    doc.rows.append(c)
    vector = checked_vector(c.chunk_id, c.embedding, c.vector_dim, summary)
    if vector is not None:
        key = (c.embed_model, versions.get(c.embed_version, c.embed_version))
        doc.live_models[key] += 1
        doc.vectors.setdefault(c.chunk_id, {})[key] = vector


def chunk_problem(c: LegacyChunk) -> str | None:
    if c.chunk_ord < 0 or c.chunk_id.bytes != ids.chunk_id_bytes(
        c.document_id, c.chunker_name, c.chunker_version, c.chunk_ord
    ):
        return "chunk_id_mismatch: chunk_id is not the UUIDv5 of its canonical key"
    if hashing.chunk_sha(c.text) != c.chunk_sha.lower():
        return "chunk_sha_mismatch: sha256 of the chunk text differs from chunk_sha"
    return None


def checked_vector(
    row_id: UUID, embedding: bytes | None, vector_dim: int, summary: Summary
) -> Vector | None:
    """The vector with its vector_sha when it has 001's dimension, else None + a problem."""
    dims = vector_wire.dimensions(embedding) if embedding is not None else None
    if embedding is None or dims != mapping.DIMENSIONS or vector_dim != dims:
        got = "none" if dims is None else dims
        summary.problem(
            row_id,
            f"wrong_dimensions: vector has {got} dimensions (vector_dim {vector_dim},"
            f" expected {mapping.DIMENSIONS}); the chunk is carried without it",
        )
        return None
    stored = vector_wire.to_halfvec(embedding)
    if stored is None:
        summary.problem(
            row_id, "vector_out_of_range: a value does not fit halfvec; carried without it"
        )
        return None
    return Vector(stored[1], stored[0])


def _take_pending(
    p: LegacyPendingVector, doc: DocChunks, versions: dict[str, str], summary: Summary
) -> None:
    if not pending_ok(p, doc, summary):
        return
    vector = checked_vector(p.buffer_id, p.embedding, p.vector_dim, summary)
    if vector is None:
        return
    key = (p.embed_model, versions.get(p.embed_version, p.embed_version))
    have = doc.vectors.setdefault(p.chunk_id, {})
    if key in have and have[key].sha != vector.sha:
        summary.problem(
            p.buffer_id,
            "pending_vector_conflict: differs from the chunk's live vector of the same"
            " model/version; the live vector is kept",
        )
        return
    have.setdefault(key, vector)


def pending_ok(p: LegacyPendingVector, doc: DocChunks, summary: Summary) -> bool:
    if p.chunk_id not in doc.valid:
        summary.problem(
            p.buffer_id, "pending_vector_orphaned: its chunk was not carried (see the chunk)"
        )
        return False
    return True
