"""`docingest backup create|verify|restore DIR` (docs/backup.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from docingest import bootstrap
from docingest.cli.common import config_errors_exit, load_settings
from docingest.ops import backup
from docingest.store.blobs import BlobStore

backup_app = typer.Typer(
    help="Consistent backups of the database and the encrypted blob store.",
    no_args_is_help=True,
)

DirArg = Annotated[Path, typer.Argument(help="Backup directory.")]


def _targets() -> tuple[str, BlobStore]:
    """The configured database (never migrated here) and blob store."""
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        return bootstrap.database_url(settings, migrate_schema=False), bootstrap.blob_store(
            settings
        )


def _fail(exc: backup.BackupError) -> typer.Exit:
    typer.echo(f"backup error: {exc}", err=True)  # one unwrapped line: it names the file
    return typer.Exit(1)


@backup_app.command("create")
def create_cmd(
    directory: DirArg,
    timestamped: Annotated[
        bool,
        typer.Option(
            "--timestamped",
            help="Write into a new DIR/<UTC time> (for scheduled backups, docs/backup.md).",
        ),
    ] = False,
    database_only: Annotated[
        bool,
        typer.Option(
            "--database-only",
            help="Dump the database and list the blobs it references without copying them:"
            " for an s3:// store whose bucket versioning keeps every object.",
        ),
    ] = False,
) -> None:
    """Dump the docingest schema and copy the blobs (still encrypted) into DIR."""
    dsn, store = _targets()
    if timestamped:
        directory = directory / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        made = backup.create(dsn, store, directory, include_blobs=not database_only)
    except backup.BackupError as exc:
        raise _fail(exc) from None
    rows = sum(made.row_counts.values())
    typer.echo(
        f"backup {directory}: snapshot {made.snapshot_at.isoformat()}, schema"
        f" {made.schema_version}, {rows} rows, {made.blobs} blobs, {made.seconds:.2f}s"
    )


@backup_app.command("verify")
def verify_cmd(directory: DirArg) -> None:
    """Check the manifest and every file's sha256 and size; exit 1 naming a bad file."""
    try:
        manifest = backup.verify(directory)
    except backup.BackupError as exc:
        raise _fail(exc) from None
    typer.echo(f"ok: {len(manifest['files'])} files match the manifest")


@backup_app.command("restore")
def restore_cmd(
    directory: DirArg,
    force: Annotated[
        bool,
        typer.Option("--force", help="Set an existing docingest schema with rows aside."),
    ] = False,
) -> None:
    """Verify DIR, then restore it into an empty database and blob store."""
    dsn, store = _targets()
    try:
        done = backup.restore(dsn, store, directory, force=force)
    except backup.BackupError as exc:
        raise _fail(exc) from None
    if done.set_aside:
        typer.echo(f"the previous schema was renamed to {done.set_aside}")
    typer.echo(
        f"restored snapshot {done.snapshot_at.isoformat()}: {sum(done.row_counts.values())}"
        f" rows, {done.blobs_copied} blobs copied, {done.jobs_resumed} unfinished jobs resumed,"
        f" {done.seconds:.2f}s"
    )
