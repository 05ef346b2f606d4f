"""Versioned migrations: upgrade, downgrade to nothing, upgrade again."""

from __future__ import annotations

import psycopg

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
