"""Read side of the 001 migration: a read-only, consistent view of a 001 database.

The connection is opened with `default_transaction_read_only=on` and reads everything in one
REPEATABLE READ transaction, so the migration sees one snapshot and cannot write to 001 even
by mistake. Large result sets are streamed with server-side cursors in binary format; vectors
arrive as the raw bytes of pgvector's binary wire format (`pipeline.vector_wire`), which the
migration passes through to its COPY without decoding them.

The class is synchronous on purpose: callers run it in a thread (`asyncio.to_thread`), where
psycopg waits for the server in C without holding the GIL. Reading the same rows through an
asyncio connection spent about as much CPU on event-loop wake-ups as on the rows themselves
(py-spy, bench/migrate_001.py), CPU the migration's writing side needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import Connection, sql
from psycopg.adapt import Buffer, Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import Format
from psycopg.types import TypeInfo

from docingest.domain.legacy_001 import LegacyJob

FETCH_ROWS = 2000


def fingerprint(dsn: str) -> str:
    """The DSN with its password removed, to record where a batch came from."""
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password" and v}
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def read_only_conninfo(dsn: str) -> str:
    options = str(conninfo_to_dict(dsn).get("options") or "")
    return make_conninfo(dsn, options=f"{options} -c default_transaction_read_only=on".strip())


@dataclass(frozen=True)
class LegacyDocument:
    document_id: UUID
    user_id: UUID
    filename: str
    mime: str
    bytes_len: int
    file_sha256: str
    parsed_sha256: str | None
    raw_path: str
    parsed_path: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class LegacyChunk:
    chunk_id: UUID
    document_id: UUID
    chunker_name: str
    chunker_version: str
    chunk_ord: int
    text: str
    chunk_sha: str
    embed_model: str
    embed_version: str
    vector_dim: int
    embedding: bytes | None  # pgvector binary wire format


@dataclass(frozen=True)
class LegacyPendingVector:
    buffer_id: UUID
    chunk_id: UUID
    document_id: UUID
    embed_model: str
    embed_version: str
    vector_dim: int
    embedding: bytes | None  # pgvector binary wire format


class _RawVectorLoader(Loader):
    """Binary `vector` values as their wire bytes."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


class LegacySource:
    """One read-only snapshot of a 001 database (schema `upload_pipeline` by default)."""

    def __init__(self, conn: Connection[Any], schema: str) -> None:
        self._conn = conn
        self._schema = sql.Identifier(schema)

    @classmethod
    def open(cls, dsn: str, schema: str = "upload_pipeline") -> LegacySource:
        conn = Connection.connect(read_only_conninfo(dsn))
        try:
            info = TypeInfo.fetch(conn, "vector")
            if info is None:
                raise ValueError("the 001 database has no pgvector `vector` type")
            conn.adapters.register_loader(info.oid, _RawVectorLoader)
            conn.commit()  # the type lookup ran in its own transaction
            conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            conn.set_read_only(True)
            exists = (
                conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.documents",))
            ).fetchone()
            if not exists or not exists[0]:
                raise ValueError(f"no 001 documents table in schema {schema!r}")
        except BaseException:
            conn.close()
            raise
        return cls(conn, schema)

    def close(self) -> None:
        self._conn.rollback()
        self._conn.close()

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._schema)

    def documents(self, batch_size: int) -> Iterator[list[LegacyDocument]]:
        """Every document, in document_id order, `batch_size` at a time."""
        with self._conn.cursor(name="legacy_documents") as cur:
            cur.execute(
                self._q(
                    "SELECT document_id, user_id, filename, mime, bytes_len, file_sha256,"
                    " parsed_sha256, raw_path, parsed_path, created_at"
                    " FROM {s}.documents ORDER BY document_id"
                )
            )
            while rows := cur.fetchmany(batch_size):
                yield [LegacyDocument(*r) for r in rows]

    def jobs(self, document_ids: Sequence[UUID]) -> list[tuple[UUID, LegacyJob]]:
        cur = self._conn.execute(
            self._q(
                "SELECT document_id, job_id, stage, state, updated_at, coalesce(retry_count, 0),"
                " last_error FROM {s}.upload_jobs WHERE document_id = ANY(%s)"
            ),
            (list(document_ids),),
        )
        return [(r[0], LegacyJob(*r[1:])) for r in cur.fetchall()]

    def chunks(self, document_ids: Sequence[UUID]) -> Iterator[LegacyChunk]:
        """The documents' chunk rows with their live vectors, by document then ordinal."""
        with self._conn.cursor(name="legacy_chunks", binary=True) as cur:
            cur.itersize = FETCH_ROWS
            cur.execute(
                self._q(
                    "SELECT chunk_id, document_id, chunker_name, chunker_version, chunk_ord,"
                    " text, chunk_sha, embed_model, embed_version, vector_dim, embedding"
                    " FROM {s}.document_chunks WHERE document_id = ANY(%s)"
                    " ORDER BY document_id, chunk_ord, chunker_name, chunker_version"
                ),
                (list(document_ids),),
            )
            for row in cur:
                yield LegacyChunk(*row)

    def pending_vectors(self, document_ids: Sequence[UUID]) -> Iterator[LegacyPendingVector]:
        """Rows waiting in the 001 `document_vector_buffer` for the documents' chunks."""
        with self._conn.cursor(name="legacy_pending", binary=True) as cur:
            cur.itersize = FETCH_ROWS
            cur.execute(
                self._q(
                    "SELECT vb.buffer_id, vb.chunk_id, c.document_id, vb.embed_model,"
                    " vb.embed_version, vb.vector_dim, vb.embedding"
                    " FROM {s}.document_vector_buffer vb"
                    " JOIN {s}.document_chunks c ON c.chunk_id = vb.chunk_id"
                    " WHERE c.document_id = ANY(%s) ORDER BY vb.chunk_id, vb.created_at"
                ),
                (list(document_ids),),
            )
            for row in cur:
                yield LegacyPendingVector(*row)

    def dangling(self) -> list[tuple[UUID, str]]:
        """Rows whose reference points nowhere (possible when 001's foreign keys were
        dropped or bypassed): (row id, reason)."""
        checks = (
            (
                "SELECT j.job_id FROM {s}.upload_jobs j WHERE NOT EXISTS"
                " (SELECT 1 FROM {s}.documents d WHERE d.document_id = j.document_id)",
                "dangling_reference: upload_jobs row points to a missing document",
            ),
            (
                "SELECT c.chunk_id FROM {s}.document_chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM {s}.documents d WHERE d.document_id = c.document_id)",
                "dangling_reference: document_chunks row points to a missing document",
            ),
            (
                "SELECT vb.buffer_id FROM {s}.document_vector_buffer vb WHERE NOT EXISTS"
                " (SELECT 1 FROM {s}.document_chunks c WHERE c.chunk_id = vb.chunk_id)",
                "dangling_reference: document_vector_buffer row points to a missing chunk",
            ),
        )
        out: list[tuple[UUID, str]] = []
        for query, reason in checks:
            cur = self._conn.execute(self._q(query))
            out.extend((r[0], reason) for r in cur.fetchall())
        return out

    def sample(self, n: int) -> list[LegacyDocument]:
        """`n` documents holding chunks, spread over the id space (deterministic)."""
        cur = self._conn.execute(
            self._q(
                "SELECT document_id, user_id, filename, mime, bytes_len, file_sha256,"
                " parsed_sha256, raw_path, parsed_path, created_at FROM {s}.documents d"
                " WHERE EXISTS (SELECT 1 FROM {s}.document_chunks c"
                "   WHERE c.document_id = d.document_id)"
                " ORDER BY md5(document_id::text) LIMIT %s"
            ),
            (n,),
        )
        return [LegacyDocument(*r) for r in cur.fetchall()]
