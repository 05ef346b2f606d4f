"""`docingest audit prune [--dry-run]`: the audit retention policy (ops/audit_retention.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from docingest.cli.common import build_runtime, load_settings, run_async, then_vacuum
from docingest.ops.audit_retention import PruneResult, prune
from docingest.store.db import DictConn

audit_app = typer.Typer(help="The audit trail (docingest.events).", no_args_is_help=True)


@audit_app.command("prune")
def prune_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; change nothing.")
    ] = False,
) -> None:
    """Remove audit rows past DOCINGEST_AUDIT_RETENTION_DAYS (six years at least) and
    anonymous-refusal aggregates past DOCINGEST_AUDIT_NOISE_RETENTION_DAYS; then VACUUM."""
    settings = load_settings(log_format="console", quiet=True)
    rt = build_runtime(settings)

    async def work(conn: DictConn) -> PruneResult:
        return await prune(
            conn,
            retention=timedelta(days=settings.audit_retention_days),
            noise_retention=timedelta(days=settings.audit_noise_retention_days),
            dry_run=dry_run,
        )

    tables = () if dry_run else ("events",)
    result = run_async(then_vacuum(rt.dsn, "docingest-audit", work, tables))
    verb = "would remove" if result.dry_run else "removed"
    typer.echo(
        f"{verb} {result.noise} anonymous-refusal rows older than"
        f" {settings.audit_noise_retention_days} days"
    )
    typer.echo(
        f"{verb} {result.expired} audit rows older than {settings.audit_retention_days} days"
    )
