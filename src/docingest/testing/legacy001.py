"""Builds 001 ("specialized workers") databases for migration tests and benchmarks.

`load_schema` loads the 001 layout (`../shared/legacy-001/schema.sql`) into a database.
`Legacy001` then writes documents the way 001 did: one job row per (document, stage),
chunks with their live vector (ids from 001's canonical key, real `chunk_sha`), rows in
the write-ahead vector buffer, and on request broken rows (dangling references, wrong
dimensions, a chunk_sha that does not match its text, an unknown stage) after dropping the
constraints that would refuse them. Vectors come from the `hash` embedder at 1536
dimensions, so a docingest worker configured the same way (`hash-lexical` / `1-d1536`)
continues where 001 stopped. Optionally the raw and parsed files are exported to a folder
laid out like 001's buckets (`raw/{user}/{doc}.pdf`, `parsed/{user}/{doc}.md`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

from docingest.domain.legacy_001 import export_path
from docingest.pipeline import hashing, ids
from docingest.pipeline.chunker import CHUNKER_NAME, CHUNKER_VERSION
from docingest.pipeline.hash_embedding import HASH_EMBEDDER_VERSION, hash_embed_many

DIMENSIONS = 1536
MODEL = "hash-lexical"
VERSION = f"{HASH_EMBEDDER_VERSION}-d{DIMENSIONS}"
OTHER_MODEL = ("legacy-model", "0")
_T0 = datetime(2025, 1, 1, tzinfo=UTC)


def load_schema(dsn: str, schema_sql: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema_sql.read_text(encoding="utf-8"))


def allow_broken_rows(dsn: str) -> None:
    """Drop the 001 constraints that would refuse the broken rows the migration must report."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for stmt in (
            "ALTER TABLE upload_pipeline.upload_jobs DROP CONSTRAINT upload_jobs_stage_check",
            "ALTER TABLE upload_pipeline.upload_jobs DROP CONSTRAINT upload_jobs_document_id_fkey",
            "ALTER TABLE upload_pipeline.document_chunks"
            " DROP CONSTRAINT document_chunks_document_id_fkey",
            "ALTER TABLE upload_pipeline.document_vector_buffer"
            " DROP CONSTRAINT document_vector_buffer_chunk_id_fkey",
            "ALTER TABLE upload_pipeline.document_chunks"
            " DROP CONSTRAINT document_chunks_vector_dim_check",
            "DROP INDEX upload_pipeline.idx_hnsw_chunks_te3s_v1",
            "ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN embedding TYPE vector",
        ):
            conn.execute(stmt)


@dataclass(frozen=True)
class LegacyChunkSpec:
    """One 001 chunk row to write; `model` None means the document's default model."""

    text: str
    model: tuple[str, str] | None = None
    dims: int = DIMENSIONS
    stored_sha: str | None = None  # None: the real sha256 of the text


@dataclass
class Written:
    document_id: UUID
    user_id: UUID
    job_ids: list[UUID] = field(default_factory=list)
    chunk_ids: list[UUID] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    vectors: dict[UUID, np.ndarray] = field(default_factory=dict)  # chunk -> live vector
    buffer_ids: list[UUID] = field(default_factory=list)


class Legacy001:
    """Writes 001 rows through one connection (autocommit)."""

    def __init__(self, dsn: str, export_dir: Path | None = None) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        register_vector(self.conn)
        self.conn.execute("SET search_path TO upload_pipeline, public")
        self.export_dir = export_dir
        self._n = 0

    def close(self) -> None:
        self.conn.close()

    def document(
        self,
        *,
        jobs: Sequence[tuple[str, str]] = (),
        parsed: bool = True,
        chunks: Sequence[LegacyChunkSpec] = (),
        raw: bytes | None = None,
        parsed_text: str | None = None,
        last_error: dict[str, Any] | None = None,
        retry_count: int = 0,
        user_id: UUID | None = None,
    ) -> Written:
        """One document with a job row per (stage, state), in order (later = more recent)."""
        self._n += 1
        doc, user = uuid4(), user_id or uuid4()
        raw = raw if raw is not None else f"%PDF-1.4 legacy fixture {self._n}\n".encode()
        parsed_text = parsed_text or f"# Plan document {self._n}\n\nCoverage details.\n"
        psha = hashing.parsed_sha256(parsed_text)
        raw_path = f"storage://raw/{user}/{doc}.pdf"
        parsed_path = f"storage://parsed/{user}/{doc}.md" if parsed else None
        self.conn.execute(
            "INSERT INTO documents (document_id, user_id, filename, mime, bytes_len, file_sha256,"
            " parsed_sha256, raw_path, parsed_path, created_at)"
            " VALUES (%s, %s, %s, 'application/pdf', %s, %s, %s, %s, %s, %s)",
            (
                doc,
                user,
                f"plan-{self._n}.pdf",
                len(raw),
                hashlib.sha256(raw).hexdigest(),
                psha if parsed else None,
                raw_path,
                parsed_path,
                _T0,
            ),
        )
        out = Written(doc, user)
        for i, (stage, state) in enumerate(jobs):
            out.job_ids.append(self.job(doc, stage, state, i, last_error, retry_count))
        self._chunks(out, chunks)
        if self.export_dir is not None:
            self._export(raw_path, raw)
            if parsed_path:
                self._export(parsed_path, parsed_text.encode("utf-8"))
        return out

    def job(
        self,
        document_id: UUID,
        stage: str,
        state: str,
        seq: int = 0,
        last_error: dict[str, Any] | None = None,
        retry_count: int = 0,
    ) -> UUID:
        job_id = uuid4()
        at = _T0 + timedelta(minutes=seq)
        self.conn.execute(
            "INSERT INTO upload_jobs (job_id, document_id, stage, state, retry_count, last_error,"
            " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                job_id,
                document_id,
                stage,
                state,
                retry_count,
                Jsonb(last_error) if last_error else None,
                at,
                at,
            ),
        )
        return job_id

    def _chunks(self, out: Written, specs: Sequence[LegacyChunkSpec]) -> None:
        if not specs:
            return
        vectors = hash_embed_many([s.text for s in specs], DIMENSIONS)
        for ord_, (spec, vec) in enumerate(zip(specs, vectors, strict=True)):
            cid = ids.chunk_id(out.document_id, CHUNKER_NAME, CHUNKER_VERSION, ord_)
            model, version = spec.model or (MODEL, VERSION)
            v = vec if spec.dims == DIMENSIONS else vec[: spec.dims]
            self.conn.execute(
                "INSERT INTO document_chunks (chunk_id, document_id, chunker_name,"
                " chunker_version, chunk_ord, text, chunk_sha, embed_model, embed_version,"
                " vector_dim, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    cid,
                    out.document_id,
                    CHUNKER_NAME,
                    CHUNKER_VERSION,
                    ord_,
                    spec.text,
                    spec.stored_sha or hashing.chunk_sha(spec.text),
                    model,
                    version,
                    DIMENSIONS,
                    Vector(v),
                ),
            )
            out.chunk_ids.append(cid)
            out.texts.append(spec.text)
            out.vectors[cid] = np.asarray(v, dtype=np.float32)

    def pending(
        self, chunk_id: UUID, vector: np.ndarray, model: tuple[str, str] = (MODEL, VERSION)
    ) -> UUID:
        """A row waiting in the 001 write-ahead vector buffer."""
        buffer_id = uuid4()
        self.conn.execute(
            "INSERT INTO document_vector_buffer (buffer_id, chunk_id, embed_model, embed_version,"
            " vector_dim, embedding) VALUES (%s, %s, %s, %s, %s, %s)",
            (buffer_id, chunk_id, model[0], model[1], len(vector), Vector(vector)),
        )
        return buffer_id

    def dangling_rows(self) -> dict[str, UUID]:
        """One row per dangling reference kind (needs `allow_broken_rows`)."""
        missing = uuid4()
        job = self.job(missing, "parsing", "queued")
        chunk = ids.chunk_id(missing, CHUNKER_NAME, CHUNKER_VERSION, 0)
        vec = hash_embed_many(["orphan"], DIMENSIONS)[0]
        self.conn.execute(
            "INSERT INTO document_chunks (chunk_id, document_id, chunker_name, chunker_version,"
            " chunk_ord, text, chunk_sha, embed_model, embed_version, vector_dim, embedding)"
            " VALUES (%s, %s, %s, %s, 0, 'orphan', %s, %s, %s, %s, %s)",
            (
                chunk,
                missing,
                CHUNKER_NAME,
                CHUNKER_VERSION,
                hashing.chunk_sha("orphan"),
                MODEL,
                VERSION,
                DIMENSIONS,
                Vector(vec),
            ),
        )
        buffer_id = self.pending(uuid4(), vec)
        return {"job": job, "chunk": chunk, "buffer": buffer_id}

    def _export(self, legacy_path: str, data: bytes) -> None:
        assert self.export_dir is not None
        path = export_path(self.export_dir, legacy_path)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def checksum(dsn: str, schema: str = "upload_pipeline") -> dict[str, str]:
    """md5 of every table's full contents in `schema`, to prove it was not touched."""
    out: dict[str, str] = {}
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " ORDER BY table_name",
                (schema,),
            ).fetchall()
        ]
        for t in tables:
            q = sql.SQL(
                "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {}.{} x"
            ).format(sql.Identifier(schema), sql.Identifier(t))
            row = conn.execute(q).fetchone()
            out[t] = str(row[0]) if row else ""
    return out
