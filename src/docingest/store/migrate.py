"""Versioned SQL migrations with working downgrades (`docingest db upgrade|downgrade|current`).

Files live next to this module as `NNNN_name.up.sql` / `NNNN_name.down.sql`. The runner owns the
`docingest` schema and its `schema_migrations` table; each migration runs in its own
transaction under an advisory lock, so concurrent starters cannot apply one twice. What is
applied is the set of recorded versions, not the highest one: a migration numbered below one
already applied (branches merged out of order) is still applied, never skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

_LOCK_KEY = 0x6C8A1E6E  # advisory lock id for migrations
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


def available() -> list[Migration]:
    files: dict[tuple[int, str], dict[str, str]] = {}
    for entry in resources.files("docingest.store.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            key = (int(m.group(1)), m.group(2))
            files.setdefault(key, {})[m.group(3)] = entry.read_text(encoding="utf-8")
    out = []
    for (version, name), parts in sorted(files.items()):
        if set(parts) != {"up", "down"}:
            raise RuntimeError(f"migration {version:04d}_{name} needs both up and down files")
        out.append(Migration(version, name, parts["up"], parts["down"]))
    return out


def head() -> int:
    migrations = available()
    return migrations[-1].version if migrations else 0


def _bootstrap(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS docingest")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS docingest.schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied_versions(conn: psycopg.Connection) -> set[int]:
    """The versions recorded as applied (empty when the schema does not exist yet)."""
    row = conn.execute("SELECT to_regclass('docingest.schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return set()
    return {int(r[0]) for r in conn.execute("SELECT version FROM docingest.schema_migrations")}


def current(conn: psycopg.Connection) -> int:
    """Applied version, 0 when none (or when the schema does not exist yet)."""
    row = conn.execute("SELECT to_regclass('docingest.schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute(
        "SELECT coalesce(max(version), 0) FROM docingest.schema_migrations"
    ).fetchone()
    return int(got[0]) if got else 0


def upgrade(dsn: str, target: int | None = None) -> list[int]:
    """Apply pending migrations up to `target` (default: all). Returns the versions applied."""
    applied: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            with conn.transaction():
                _bootstrap(conn)
            done = applied_versions(conn)
            for mig in available():
                if target is not None and mig.version > target:
                    break
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(mig.up))  # trusted package file
                    conn.execute(
                        "INSERT INTO docingest.schema_migrations (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
                applied.append(mig.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def downgrade(dsn: str, target: int) -> list[int]:
    """Revert migrations above `target`, newest first. Returns the versions reverted."""
    reverted: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            done = applied_versions(conn)
            for mig in reversed(available()):
                if mig.version <= target or mig.version not in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(mig.down))  # trusted package file
                    conn.execute(
                        "DELETE FROM docingest.schema_migrations WHERE version = %s", (mig.version,)
                    )
                reverted.append(mig.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return reverted


def current_version(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return current(conn)
