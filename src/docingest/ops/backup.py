"""`docingest backup create|verify|restore` (docs/backup.md).

Consistency while workers run, in three steps:
1. One REPEATABLE READ transaction exports its snapshot (`pg_export_snapshot`), reads the
   schema version, the row counts per table and the blob keys the rows reference, and
   `pg_dump --snapshot` dumps exactly that snapshot. So the manifest's counts are the
   dump's counts, and restore can check them.
2. The blobs are copied AFTER the snapshot. Uploads and parses write their blob before
   the rows that reference it commit, and objects are immutable, so every blob the dump
   references already exists and cannot change. Blobs written later are extra and
   harmless (unreferenced, or rewritten identically when a restored job redoes a stage).
3. A blob referenced by the snapshot but deleted before it was copied (a document deleted
   during the backup) fails the backup: it could not be restored whole. Run it again.

Restore: verify everything first; refuse a database whose `docingest` tables hold rows
(unless `force`, which renames the old schema aside instead of dropping it); copy the
blobs (never replacing an object), prove the configured master key opens them, then
`pg_restore --single-transaction`, so the database shows all of the backup or nothing.
Leases in the dump belong to workers that no longer exist: they are cleared, and every
unfinished job is claimable at once (one waiting for a parse callback may have missed it
before the disaster); the restore costs them no retry.

Database only (`include_blobs=False`), for an s3:// store whose bucket versioning keeps
every object: the dump and the list of blob keys the snapshot references; restore checks
that each of them is in the configured store before it touches the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from docingest import __version__
from docingest.ops import backup_blobs, backup_manifest
from docingest.ops.backup_manifest import BackupInvalid
from docingest.ops.pg_tools import BackupError, find_tool, run_tool, server_major
from docingest.store import migrate
from docingest.store.blob_format import BlobIntegrityError
from docingest.store.blobs import BlobStore
from docingest.store.statuses import TERMINAL_SQL

__all__ = [
    "BackupError",
    "BackupInvalid",
    "Created",
    "Restored",
    "create",
    "restore",
    "row_counts",
    "verify",
]

DUMP = "db.dump"
SCHEMA = "docingest"
_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'docingest' ORDER BY tablename"
_REFERENCED = (
    "SELECT raw_path FROM docingest.documents"
    " UNION SELECT raw_path FROM docingest.upload_jobs"
    " UNION SELECT parsed_path FROM docingest.upload_jobs WHERE parsed_path IS NOT NULL"
)
_PROBE = "SELECT raw_path, file_sha256 FROM docingest.documents ORDER BY document_id LIMIT 1"
# Every unfinished job resumes now: a lease belongs to a worker that no longer exists, and
# a job waiting (for a parse callback, a backoff) may have missed what it waited for before
# the disaster. Re-evaluating costs a stage's idempotent rerun or one status poll.
_RESUME_UNFINISHED = (
    "UPDATE docingest.upload_jobs SET claimed_by = NULL, lease_expires_at = NULL,"
    " next_attempt_at = now()"
    f" WHERE status NOT IN {TERMINAL_SQL}"
)

verify = backup_manifest.verify


@dataclass(frozen=True)
class Created:
    path: Path
    snapshot_at: datetime
    schema_version: int
    row_counts: dict[str, int]
    blobs: int
    seconds: float


@dataclass(frozen=True)
class Restored:
    snapshot_at: datetime
    row_counts: dict[str, int]
    blobs_copied: int
    jobs_resumed: int  # unfinished jobs made claimable now, leases cleared
    set_aside: str | None
    seconds: float


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(_TABLES).fetchall()]
    counts: dict[str, int] = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM docingest.{}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def _new_backup_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} exists and is not an empty directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def create(dsn: str, store: BlobStore, dest: Path, *, include_blobs: bool = True) -> Created:
    """Dump the `docingest` schema and copy the blob store into `dest` (new or empty);
    without `include_blobs`, record the referenced blob keys instead of copying them."""
    started = time.monotonic()
    if include_blobs:
        backup_blobs.local_root(store)  # refuse unsupported stores before writing anything
    _new_backup_dir(dest)
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        row = conn.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
        assert row is not None
        snapshot, snapshot_at = str(row[0]), row[1]
        schema_version = migrate.current(conn)
        if schema_version == 0:
            raise BackupError("the database has no docingest schema to back up")
        counts = row_counts(conn)
        referenced = {str(r[0]) for r in conn.execute(_REFERENCED).fetchall()}
        probe = conn.execute(_PROBE).fetchone()
        major = server_major(conn)
        pg_dump, dump_major = find_tool("pg_dump", major)
        run_tool(
            pg_dump,
            dsn,
            [
                "--format=custom",
                f"--schema={SCHEMA}",
                f"--snapshot={snapshot}",
                f"--file={dest / DUMP}",
            ],
        )
        conn.rollback()
    copied = set(backup_blobs.export_all(store, dest)) if include_blobs else set()
    missing = sorted(referenced - copied) if include_blobs else []
    if missing:
        raise BackupError(
            f"{len(missing)} blob(s) referenced by the snapshot were deleted during the"
            f" backup (first: {missing[0]}); run the backup again"
        )
    files = {}
    for name in [DUMP, *(f"{backup_blobs.BLOBS_DIR}/{k}" for k in sorted(copied))]:
        sha, size = backup_manifest.file_digest(dest / name)
        files[name] = {"sha256": sha, "size": size}
    backup_manifest.write(
        dest,
        {
            "created_at": datetime.now(UTC).isoformat(),
            "snapshot_at": snapshot_at.isoformat(),
            "docingest_version": __version__,
            "schema_version": schema_version,
            "postgres_major": major,
            "pg_dump_major": dump_major,
            "row_counts": counts,
            "probe": {"key": str(probe[0]), "sha256": str(probe[1])} if probe else None,
            "files": files,
            **({} if include_blobs else {"blobs_in_store": sorted(referenced)}),
        },
    )
    return Created(
        dest,
        snapshot_at,
        schema_version,
        counts,
        len(copied),
        time.monotonic() - started,
    )


def _schema_exists(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT to_regnamespace('docingest')").fetchone() != (None,)


def _occupied_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """docingest tables that hold rows (the migration bookkeeping does not count)."""
    if not _schema_exists(conn):
        return []
    return [t for t, n in row_counts(conn).items() if n and t != "schema_migrations"]


def _clear_target(conn: psycopg.Connection[Any], occupied: list[str]) -> str | None:
    """Make room for the restored schema; the name the old one was set aside under."""
    if not _schema_exists(conn):
        return None
    if not occupied:
        conn.execute("DROP SCHEMA docingest CASCADE")  # tables without rows: nothing lost
        return None
    aside = f"docingest_before_restore_{datetime.now(UTC):%Y%m%d%H%M%S}"
    conn.execute(sql.SQL("ALTER SCHEMA docingest RENAME TO {}").format(sql.Identifier(aside)))
    return aside


def _check_probe(store: BlobStore, probe: dict[str, str] | None) -> None:
    if probe is None:
        return
    try:
        asyncio.run(store.get_bytes(probe["key"], expected_sha256=probe["sha256"]))
    except BlobIntegrityError:
        raise BackupError(
            f"blob {probe['key']} does not open with the configured master key; set"
            " DOCINGEST_MASTER_KEY to the key in use when the backup was taken"
        ) from None


def _check_in_store(store: BlobStore, keys: list[str]) -> None:
    """A database-only backup: every blob its rows reference must be in the store."""

    async def missing() -> list[str]:
        return [k for k in keys if not await store.exists(k)]

    gone = asyncio.run(missing()) if keys else []
    if gone:
        raise BackupError(
            f"{len(gone)} blob(s) the backup references are not in the blob store (first:"
            f" {gone[0]}); restore the bucket's versions from before the disaster first"
        )


def restore(dsn: str, store: BlobStore, source: Path, *, force: bool = False) -> Restored:
    """Restore a verified backup into an empty database and blob store (see module doc)."""
    started = time.monotonic()
    manifest = verify(source)
    if manifest["schema_version"] > migrate.head():
        raise BackupError(
            f"the backup has schema version {manifest['schema_version']}; this docingest"
            f" knows up to {migrate.head()}: upgrade docingest first"
        )
    prefix = f"{backup_blobs.BLOBS_DIR}/"
    wanted = {
        name.removeprefix(prefix): entry["sha256"]
        for name, entry in manifest["files"].items()
        if name.startswith(prefix)
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        pg_restore, _ = find_tool("pg_restore", manifest["pg_dump_major"])
        occupied = _occupied_tables(conn)
        if occupied and not force:
            raise BackupError(
                f"the database already holds docingest data ({len(occupied)} tables with"
                " rows); restore needs an empty one (--force sets the old schema aside)"
            )
        todo = backup_blobs.plan_import(store, wanted)
        for key in todo:
            backup_blobs.import_file(store, key, source / prefix / key)
        _check_in_store(store, manifest.get("blobs_in_store", []))
        _check_probe(store, manifest["probe"])
        set_aside = _clear_target(conn, occupied)
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        run_tool(
            pg_restore,
            dsn,
            [
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-acl",
                str(source / DUMP),
            ],
        )
        cleared = conn.execute(_RESUME_UNFINISHED).rowcount
        counts = row_counts(conn)
    if counts != manifest["row_counts"]:
        raise BackupError("restored row counts differ from the manifest's")
    return Restored(
        datetime.fromisoformat(manifest["snapshot_at"]),
        counts,
        len(todo),
        cleared,
        set_aside,
        time.monotonic() - started,
    )
