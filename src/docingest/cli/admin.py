"""Small commands: `status`, `token`, `db upgrade|downgrade|current`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from docingest import bootstrap
from docingest.api.auth import mint_token
from docingest.cli.common import (
    config_errors_exit,
    err_console,
    load_settings,
)
from docingest.clients.embedders import Embedder
from docingest.store import migrate
from docingest.store.db import open_pool
from docingest.store.vector_index import ensure_vector_index

db_app = typer.Typer(help="Schema migrations.", no_args_is_help=True)


def _dsn(migrate_schema: bool = True) -> str:
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        return bootstrap.database_url(settings, migrate_schema=migrate_schema)


@db_app.command("upgrade")
def db_upgrade(
    to: Annotated[int | None, typer.Option(help="Target version (default: latest).")] = None,
) -> None:
    """Apply pending migrations. At the latest version, also create the configured embedding
    model's vector index: that is DDL too, which processes started with --no-migrate under a
    restricted role cannot run."""
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        embedder = bootstrap.embedder(settings)
        dsn = bootstrap.database_url(settings, migrate_schema=False)
    applied = migrate.upgrade(dsn, to)
    current = migrate.current_version(dsn)
    if current == migrate.head():
        asyncio.run(_ensure_vector_index(dsn, embedder))
    typer.echo(f"applied: {applied or 'nothing'}; current: {current}")


async def _ensure_vector_index(dsn: str, embedder: Embedder) -> None:
    try:
        pool = await open_pool(dsn, min_size=1, max_size=1, name="docingest-db")
        async with pool, pool.connection() as conn:
            await ensure_vector_index(conn, embedder.model, embedder.version, embedder.dimensions)
    finally:
        await embedder.aclose()


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
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a JWT for local use."""
    settings = load_settings(log_format="console", quiet=True)
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


_STATUS_SQL = """
SELECT
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
     (SELECT status, count(*) AS n FROM docingest.upload_jobs GROUP BY status) s) AS by_status,
  (SELECT extract(epoch FROM now() - min(next_attempt_at)) FROM docingest.upload_jobs
     WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding')
       AND claimed_by IS NULL AND next_attempt_at <= now()) AS queue_lag_s,
  (SELECT job_id FROM docingest.upload_jobs
     WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding')
     ORDER BY created_at LIMIT 1) AS oldest_waiting_job,
  (SELECT coalesce(jsonb_object_agg(code, n), '{}') FROM
     (SELECT last_error->>'code' AS code, count(*) AS n FROM docingest.upload_jobs
      WHERE status IN ('failed_parse', 'failed_chunking', 'failed_embedding') GROUP BY 1) f) AS failures,
  (SELECT count(*) FROM docingest.upload_jobs WHERE claimed_by IS NOT NULL
     AND lease_expires_at > now()) AS in_flight
"""


def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Jobs by status, queue lag, oldest waiting job, failures by code."""
    dsn = _dsn()

    async def run() -> dict[str, Any]:
        pool = await open_pool(dsn, max_size=1, name="docingest-status")
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(_STATUS_SQL)
                row = await cur.fetchone()
                assert row is not None
                return {
                    "by_status": row["by_status"],
                    "queue_lag_s": round(float(row["queue_lag_s"] or 0.0), 3),
                    "oldest_waiting_job": str(row["oldest_waiting_job"])
                    if row["oldest_waiting_job"]
                    else None,
                    "failures": row["failures"],
                    "in_flight": int(row["in_flight"]),
                }
        finally:
            await pool.close()

    data = asyncio.run(run())
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
