"""`docingest purge --older-than DAYS [--dry-run]`: retention (ops/purge.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from docingest.cli.common import build_runtime, load_settings, run_async, then_vacuum
from docingest.ops.purge import PurgeResult, purge
from docingest.store.db import DictConn
from docingest.store.vacuum import DOCUMENT_TABLES


def purge_cmd(
    older_than: Annotated[
        int, typer.Option("--older-than", min=1, help="Remove documents older than DAYS.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; change nothing.")
    ] = False,
) -> None:
    """Remove old documents with their jobs, chunks, vectors and blobs (the audit trail stays),
    then blobs no row references; then VACUUM the document tables."""
    settings = load_settings(log_format="console", quiet=True)
    rt = build_runtime(settings)

    async def work(conn: DictConn) -> PurgeResult:
        return await purge(conn, rt.blobs, timedelta(days=older_than), dry_run=dry_run)

    tables = () if dry_run else DOCUMENT_TABLES
    result = run_async(then_vacuum(rt.dsn, "docingest-purge", work, tables))
    verb = "would purge" if result.dry_run else "purged"
    for document_id in result.document_ids:
        typer.echo(f"{verb} {document_id}")
    typer.echo(f"{verb} {len(result.document_ids)} documents older than {older_than} days")
    typer.echo(f"{verb} {len(result.orphan_blobs)} blobs no row references")
