"""Versioned migrations: upgrade, downgrade to nothing, upgrade again."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from docingest.pipeline import hashing
from docingest.pipeline.stored_vector import as_stored
from docingest.store import migrate

TABLES = {
    "documents",
    "upload_jobs",
    "document_chunk_buffer",
    "document_vector_buffer",
    "document_chunks",
    "events",
    "webhook_log",
    "vector_indexes",
}


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'docingest'"
        ).fetchall()
    return {r[0] for r in rows} - {"schema_migrations"}


def test_upgrade_downgrade_roundtrip(fresh_dsn: str) -> None:
    assert migrate.current_version(fresh_dsn) == 0
    assert migrate.upgrade(fresh_dsn) == [m.version for m in migrate.available()]
    assert migrate.current_version(fresh_dsn) == migrate.head()
    assert _tables(fresh_dsn) >= TABLES
    assert migrate.upgrade(fresh_dsn) == []  # idempotent
    reverted = migrate.downgrade(fresh_dsn, 0)
    assert reverted == sorted(reverted, reverse=True) and reverted
    assert migrate.current_version(fresh_dsn) == 0
    assert _tables(fresh_dsn) == set()
    migrate.upgrade(fresh_dsn)
    assert _tables(fresh_dsn) >= TABLES


def test_a_migration_below_the_highest_applied_one_is_still_applied(fresh_dsn: str) -> None:
    """Branches merged out of order: version 4 missing while later ones are applied."""
    migrate.upgrade(fresh_dsn)
    [gap] = [m for m in migrate.available() if m.version == 4]
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(gap.down)
        conn.execute("DELETE FROM docingest.schema_migrations WHERE version = 4")
    assert "rate_budgets" not in _tables(fresh_dsn)
    assert migrate.current_version(fresh_dsn) == migrate.head()  # the highest is still applied
    assert migrate.upgrade(fresh_dsn) == [4]
    assert "rate_budgets" in _tables(fresh_dsn)
    assert migrate.downgrade(fresh_dsn, 3)[-1] == 4  # and it is reverted in its turn


def test_events_are_append_only(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO docingest.events (actor, action, outcome) VALUES ('t', 'a', 'ok')"
        )
        try:
            conn.execute("UPDATE docingest.events SET outcome = 'changed'")
        except psycopg.errors.RaiseException:
            pass
        else:
            raise AssertionError("events row was updated")
        assert conn.execute("SELECT outcome FROM docingest.events").fetchone() == ("ok",)


def _vector_columns(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(type, storage) of the two vector columns."""
    rows = conn.execute(
        "SELECT format_type(atttypid, atttypmod), attstorage FROM pg_attribute"
        " WHERE (attrelid, attname) IN (('docingest.document_chunks'::regclass, 'embedding'),"
        " ('docingest.document_vector_buffer'::regclass, 'vector'))"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_halfvec_migration_converts_rehashes_and_reverts_existing_rows(fresh_dsn: str) -> None:
    """0010 on a database holding `vector` rows (one promoted, one buffered): both become
    `halfvec` with a vector_sha of the stored value and the buffer row gets its chunk_sha;
    the downgrade gives back `vector` rows whose hashes still hold."""
    migrate.upgrade(fresh_dsn, 9)
    rng = np.random.default_rng(1)
    promoted, buffered = rng.standard_normal((2, 1536)).astype(np.float32)
    doc, user, chunk_a, chunk_b = (uuid.uuid4() for _ in range(4))
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
            " file_sha256, raw_path) VALUES (%s, %s, 'x.pdf', 1, %s, 'raw/x')",
            (doc, user, "a" * 64),
        )
        conn.execute(
            "INSERT INTO docingest.document_chunks (chunk_id, document_id, user_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text, embed_model, embed_version,"
            " embedding, vector_sha) VALUES (%s, %s, %s, 0, 'm', '1', 'sha-a', 'a', 'mod', 'v',"
            " %s, %s)",
            (chunk_a, doc, user, promoted, hashing.vector_sha(promoted)),
        )
        conn.execute(
            "INSERT INTO docingest.document_chunk_buffer (chunk_id, document_id, chunk_ord,"
            " chunker_name, chunker_version, chunk_sha, text) VALUES (%s, %s, 1, 'm', '1',"
            " 'sha-b', 'b')",
            (chunk_b, doc),
        )
        conn.execute(
            "INSERT INTO docingest.document_vector_buffer (document_id, chunk_id, embed_model,"
            " embed_version, vector, vector_sha, batch_id) VALUES (%s, %s, 'mod', 'v', %s, %s,"
            " %s)",
            (doc, chunk_b, buffered, hashing.vector_sha(buffered), uuid.uuid4()),
        )
    assert 10 in migrate.upgrade(fresh_dsn, 10)
    with psycopg.connect(fresh_dsn) as conn:
        register_vector(conn)
        kinds = _vector_columns(conn)
        assert kinds == [("halfvec", "m"), ("halfvec", "m")]
        vec, sha = conn.execute(
            "SELECT embedding, vector_sha FROM docingest.document_chunks"
        ).fetchone()  # type: ignore[misc]
        assert sha == hashing.vector_sha(vec.to_numpy()) == hashing.vector_sha(as_stored(promoted))
        vec, sha, chunk_sha = conn.execute(  # type: ignore[misc]
            "SELECT vector, vector_sha, chunk_sha FROM docingest.document_vector_buffer"
        ).fetchone()
        assert sha == hashing.vector_sha(as_stored(buffered)) and chunk_sha == "sha-b"
    assert migrate.downgrade(fresh_dsn, 9) == [10]
    with psycopg.connect(fresh_dsn) as conn:
        register_vector(conn)
        kinds = _vector_columns(conn)
        assert kinds == [("vector", "e"), ("vector", "e")]
        for table, column in (
            ("document_chunks", "embedding"),
            ("document_vector_buffer", "vector"),
        ):
            vec, sha = conn.execute(  # type: ignore[misc]
                f"SELECT {column}, vector_sha FROM docingest.{table}"
            ).fetchone()
            assert sha == hashing.vector_sha(vec.to_numpy())
