"""Duplicates, measured independently of the constraints that forbid them:

- what the provider billed: inputs answered by the fake embedder (its own counters) per
  distinct chunk text stored, which is <= 1.0 only if no text was paid for twice, and the
  fake's own count of inputs whose text it had already billed;
- per document, what is stored against what the chunker yields when rerun here on the
  stored markdown: the same ordinals and texts, exactly one vector per chunk, and each
  vector the one the provider returns for that text.

Unique constraints make a second row with the same key impossible; they do not stop a
chunk from going missing, a text from being paid twice, or a vector from landing on the
wrong chunk. These checks would see each of those."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
from pgvector.psycopg import register_vector

from docingest import bootstrap
from docingest.config import Settings
from docingest.pipeline import hashing
from docingest.testing.fake_openai import deterministic_vector
from docingest.worker.stages import chunk_for


def billing(stats: dict[str, Any], distinct_texts: int) -> dict[str, Any]:
    """Provider-side billing over one phase (the fake's stats were reset at its start)."""
    inputs = int(stats.get("inputs", 0))
    return {
        "inputs_billed": inputs,
        "distinct_texts_stored": distinct_texts,
        "inputs_per_distinct_text": round(inputs / distinct_texts, 4) if distinct_texts else None,
        "inputs_billed_again_seen_by_provider": int(stats.get("inputs_billed_again", -1)),
    }


def rechunk(dsn: str, settings: Settings, document_ids: list[str]) -> dict[str, Any]:
    """Rerun the chunker on each document's stored markdown and compare with its stored
    chunks and vectors. Returns counts and the documents that differ (ids only)."""
    blobs = bootstrap.blob_store(settings)
    embedder = bootstrap.embedder(settings)
    model, dims = settings.embed_model, settings.embed_dimensions
    mismatched: list[dict[str, str]] = []
    chunks = 0
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        for document_id in document_ids:
            row = conn.execute(
                "SELECT parsed_path, parsed_sha256 FROM docingest.upload_jobs"
                " WHERE document_id = %s AND status = 'complete'",
                (UUID(document_id),),
            ).fetchone()
            if row is None:
                mismatched.append({"document_id": document_id, "problem": "not complete"})
                continue
            markdown = asyncio.run(blobs.get_bytes(row[0], expected_sha256=row[1])).decode()
            expected = asyncio.run(chunk_for(markdown, embedder))
            stored = conn.execute(
                "SELECT chunk_ord, chunk_sha, embedding FROM docingest.document_chunks"
                " WHERE document_id = %s AND embed_model = %s ORDER BY chunk_ord",
                (UUID(document_id), model),
            ).fetchall()
            chunks += len(stored)
            problem = _compare(expected, stored, model, dims)
            if problem:
                mismatched.append({"document_id": document_id, "problem": problem})
    return {
        "documents_checked": len(document_ids),
        "chunks_checked": chunks,
        "documents_differing": mismatched,
    }


def _compare(expected: list[Any], stored: list[Any], model: str, dims: int) -> str | None:
    if len(stored) != len(expected):
        return f"{len(stored)} stored chunks, the chunker yields {len(expected)}"
    for chunk, (ord_, sha, vector) in zip(expected, stored, strict=True):
        if (ord_, sha) != (chunk.ord, hashing.chunk_sha(chunk.text)):
            return f"chunk {ord_} differs from the chunker's"
        # stored as halfvec (migration 0010): compare with the fake's vector at that precision
        want = hashing.vector_sha(deterministic_vector(model, chunk.text, dims).astype("<f2"))
        if hashing.vector_sha(vector.to_numpy()) != want:
            return f"chunk {ord_} has another text's vector"
    return None
