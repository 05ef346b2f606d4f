"""`docingest compare-001`: the parallel-operation check of MAPPING.md.

A sample of 001 documents is processed again by docingest's own pipeline (local parser ->
normalization -> `markdown-simple@1` -> the configured embedder) from their raw files, and
compared with what 001 stored: chunk count and texts, and per chunk the cosine similarity of
the vectors. The shadow area is this process: re-processed chunks and vectors live only in
memory and are never written to any table (so search, which reads `document_chunks`, can
never see them); raw files are read from the docingest blob store (documents migrated with
`--blobs-from`) or from a 001 export, and checked against 001's sha256 first. Reasons name
chunk ordinals and codes, never text.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
from psycopg import AsyncConnection

from docingest.clients.embedders import Embedder
from docingest.domain.errors import DocingestError
from docingest.domain.legacy_001 import export_path, is_legacy_path
from docingest.ops.legacy_source import LegacyChunk, LegacyDocument, LegacySource
from docingest.pipeline import chunker, vector_wire
from docingest.pipeline.normalize import normalize_markdown
from docingest.store.blobs import BlobStore
from docingest.worker.context import Parser
from docingest.worker.stages import chunk_for

DEFAULT_MIN_COSINE = 0.99


@dataclass
class Comparison:
    document_id: UUID
    chunks_001: int = 0
    chunks_002: int = 0
    min_cosine: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": str(self.document_id),
            "verdict": "pass" if self.passed else "fail",
            "chunks_001": self.chunks_001,
            "chunks_002": self.chunks_002,
            "min_cosine": None if self.min_cosine is None else round(self.min_cosine, 6),
            "reasons": self.reasons,
        }


@dataclass(frozen=True)
class Shadow:
    """What docingest makes of one raw file: chunk texts and their vectors."""

    texts: list[str]
    vectors: list[np.ndarray]


async def reprocess(raw: bytes, parser: Parser, embedder: Embedder) -> Shadow:
    """The 002 pipeline on one file, with the chunk sizes the worker uses."""
    parsed = await parser.parse(raw)
    markdown = normalize_markdown(parsed.markdown)
    pieces = await chunk_for(markdown, embedder)
    texts = [p.text for p in pieces]
    vectors: list[np.ndarray] = []
    step = max(1, embedder.max_batch_inputs)
    for i in range(0, len(texts), step):
        vectors.extend(np.asarray(v) for v in (await embedder.embed(texts[i : i + step])).vectors)
    return Shadow(texts, vectors)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na and nb else 0.0


def judge(
    result: Comparison,
    legacy: list[LegacyChunk],
    shadow: Shadow,
    model: tuple[str, str],
    min_cosine: float,
) -> None:
    """Fill `result` with every difference between 001's chunks and the shadow's."""
    result.chunks_001, result.chunks_002 = len(legacy), len(shadow.texts)
    ours = (chunker.CHUNKER_NAME, chunker.CHUNKER_VERSION)
    versions = {(c.chunker_name.lower(), c.chunker_version) for c in legacy}
    if versions != {ours}:
        result.reasons.append("chunker_differs: 001 chunks were not made by markdown-simple@1")
    if len(legacy) != len(shadow.texts):
        result.reasons.append(f"chunk_count: 001 has {len(legacy)}, docingest {len(shadow.texts)}")
    models = {(c.embed_model, c.embed_version) for c in legacy}
    if models != {model}:
        result.reasons.append(f"model_differs: vectors not comparable with {model[0]}/{model[1]}")
    cosines: list[float] = []
    for c, text, vec in zip(legacy, shadow.texts, shadow.vectors, strict=False):
        if c.text != text:
            result.reasons.append(f"chunk {c.chunk_ord}: text differs")
        if (c.embed_model, c.embed_version) == model and c.embedding is not None:
            old = vector_wire.to_numpy(c.embedding)
            cos = _cosine(old, vec) if len(old) == len(vec) else 0.0
            cosines.append(cos)
            if cos < min_cosine:
                result.reasons.append(f"chunk {c.chunk_ord}: cosine {cos:.4f} < {min_cosine}")
    result.min_cosine = min(cosines) if cosines else None


async def _raw_bytes(
    doc: LegacyDocument, target: AsyncConnection[Any], blobs: BlobStore, export: Path | None
) -> bytes | None:
    if export is not None:
        path = export_path(export, doc.raw_path)
        if path is None or not path.is_file():
            return None
        data = await asyncio.to_thread(path.read_bytes)
        ok = hashlib.sha256(data).hexdigest() == doc.file_sha256.lower()
        return data if ok else None
    cur = await target.execute(
        "SELECT raw_path FROM docingest.documents WHERE document_id = %s", (doc.document_id,)
    )
    row = await cur.fetchone()
    if row is None or is_legacy_path(row[0]):
        return None
    return await blobs.get_bytes(row[0], expected_sha256=doc.file_sha256.lower())


async def compare(
    source_dsn: str,
    target_dsn: str,
    *,
    blobs: BlobStore,
    parser: Parser,
    embedder: Embedder,
    sample: int,
    schema: str = "upload_pipeline",
    blobs_from: Path | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> list[Comparison]:
    """Compare `sample` 001 documents (those with chunks) with docingest's re-processing."""
    source = await asyncio.to_thread(LegacySource.open, source_dsn, schema)
    target = await AsyncConnection.connect(target_dsn, autocommit=True)
    results: list[Comparison] = []
    try:
        for doc in await asyncio.to_thread(source.sample, sample):
            result = Comparison(doc.document_id)
            results.append(result)
            legacy = await asyncio.to_thread(list, source.chunks([doc.document_id]))
            raw = await _raw_bytes(doc, target, blobs, blobs_from)
            if raw is None:
                result.chunks_001 = len(legacy)
                result.reasons.append(
                    "raw_unavailable: raw file not in docingest or the export, or its sha256"
                    " differs (migrate with --blobs-from first)"
                )
                continue
            try:
                shadow = await reprocess(raw, parser, embedder)
            except DocingestError as exc:
                result.reasons.append(f"reprocess_failed: {exc.code}")
                continue
            judge(result, legacy, shadow, (embedder.model, embedder.version), min_cosine)
    finally:
        await target.close()
        await asyncio.to_thread(source.close)
    return results
