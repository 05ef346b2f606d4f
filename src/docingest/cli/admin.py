"""Small commands: `status`, `token`, `db upgrade|downgrade|current`."""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from docingest import bootstrap
from docingest.cli.common import (
    config_errors_exit,
    err_console,
    fail,
    load_settings,
    run_async,
)
from docingest.security.bearer_tokens import mint_token
from docingest.store import dashboard_stats, embedded_upgrade, migrate, queue_stats
from docingest.store.db import open_pool

db_app = typer.Typer(help="Schema migrations.", no_args_is_help=True)


def _dsn(migrate_schema: bool = True) -> str:
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        return bootstrap.database_url(settings, migrate_schema=migrate_schema)


@db_app.command("upgrade")
def db_upgrade(
    to: Annotated[int | None, typer.Option(help="Target version (default: latest).")] = None,
) -> None:
    """Apply pending migrations."""
    dsn = _dsn(migrate_schema=False)
    applied = migrate.upgrade(dsn, to)
    typer.echo(f"applied: {applied or 'nothing'}; current: {migrate.current_version(dsn)}")


@db_app.command("upgrade-embedded")
def db_upgrade_embedded() -> None:
    """Upgrade an embedded home made by the older pgserver wheel (PostgreSQL 16) to
    PostgreSQL 18 in place (pg_upgrade; the old data directory is kept as pg.old). Stop every
    docingest process using $DOCINGEST_HOME first."""
    settings = load_settings(log_format="console", quiet=True)
    if settings.database_url:
        fail("DOCINGEST_DATABASE_URL is set: upgrade-embedded only upgrades the embedded home", 2)
    with config_errors_exit():
        typer.echo(embedded_upgrade.upgrade_home(settings.home))


@db_app.command("downgrade")
def db_downgrade(
    to: Annotated[int, typer.Option(help="Target version (0 removes everything).")] = -1,
) -> None:
    """Revert migrations down to --to (default: one step)."""
    dsn = _dsn(migrate_schema=False)
    target = migrate.current_version(dsn) - 1 if to < 0 else to
    reverted = migrate.downgrade(dsn, max(target, 0))
    typer.echo(f"reverted: {reverted or 'nothing'}; current: {migrate.current_version(dsn)}")


@db_app.command("current")
def db_current() -> None:
    """Print the applied and latest schema versions."""
    dsn = _dsn(migrate_schema=False)
    typer.echo(f"current: {migrate.current_version(dsn)}; head: {migrate.head()}")


def token_cmd(
    user: Annotated[str, typer.Option(help="User id (UUID) for the token's sub.")],
    admin: Annotated[bool, typer.Option("--admin", help="Grant the admin role.")] = False,
    ttl: Annotated[
        int, typer.Option(help="Lifetime in seconds (1 to DOCINGEST_JWT_MAX_TTL_SECONDS).")
    ] = 3600,
) -> None:
    """Mint a JWT for local use."""
    settings = load_settings(log_format="console", quiet=True)
    if not 0 < ttl <= settings.jwt_max_ttl_s:
        err_console.print(
            f"[red]--ttl must be between 1 and {settings.jwt_max_ttl_s} seconds"
            " (DOCINGEST_JWT_MAX_TTL_SECONDS)[/red]"
        )
        raise typer.Exit(2)
    try:
        user_id = UUID(user)
    except ValueError:
        err_console.print("[red]--user must be a UUID[/red]")
        raise typer.Exit(2) from None
    secret = bootstrap.jwt_secret(settings)
    typer.echo(
        mint_token(
            secret,
            user_id,
            admin=admin,
            ttl_s=ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )


def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Jobs by status, queue lag, oldest waiting job, failures by code."""
    dsn = _dsn()

    async def run() -> dict[str, Any]:
        pool = await open_pool(dsn, max_size=1, name="docingest-status")
        try:
            async with pool.connection() as conn:
                queue = await queue_stats.snapshot(conn)
                failures = (await dashboard_stats.read(conn)).failures_by_code
                oldest = await queue_stats.oldest_waiting_job(conn)
        finally:
            await pool.close()
        return {
            "by_status": {s.value: n for s, n in queue.by_status.items() if n},
            "queue_lag_s": round(queue.oldest_claimable_s, 3),
            "oldest_waiting_job": str(oldest) if oldest else None,
            "failures": dict(failures),
            "in_flight": queue.in_flight,
        }

    data = run_async(run())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="jobs by status")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for status, n in sorted(data["by_status"].items()):
        table.add_row(status, str(n))
    Console().print(table)
    Console().print(
        f"queue lag: {data['queue_lag_s']} s; in flight: {data['in_flight']}; "
        f"oldest waiting job: {data['oldest_waiting_job'] or '-'}; failures: {data['failures'] or '-'}"
    )
