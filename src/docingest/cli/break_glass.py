"""`docingest break-glass grant|revoke`: emergency access (docs/security.md "Break-glass").

Run as the schema owner with the API's DOCINGEST_JWT_SECRET. The reason is stored in the grant
row only; stdout carries the token (grant) or one confirmation line (revoke)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import psycopg
import typer
from psycopg.rows import dict_row

from docingest import bootstrap
from docingest.cli.common import config_errors_exit, fail, load_settings, run_async
from docingest.security.bearer_tokens import mint_break_glass_token
from docingest.store import break_glass
from docingest.store.db import DictConn

break_glass_app = typer.Typer(
    help="Time-boxed, audited emergency read access.", no_args_is_help=True
)

MAX_TTL_MINUTES = 24 * 60


def _uuid(raw: str, what: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        fail(f"{what} must be a UUID", 2)


async def _connect(dsn: str) -> DictConn:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)


@break_glass_app.command("grant")
def grant_cmd(
    operator: Annotated[str, typer.Option(help="Operator id (UUID): the token's subject.")],
    reason: Annotated[
        str | None, typer.Option(help="Why (incident or ticket); kept in the grant row only.")
    ] = None,
    ttl_minutes: Annotated[
        int, typer.Option(min=1, max=MAX_TTL_MINUTES, help="Minutes until the grant expires.")
    ] = 60,
) -> None:
    """Grant one operator read access to any user's documents and jobs; print its token."""
    operator_id = _uuid(operator, "--operator")
    if reason is None or not reason.strip():
        fail("--reason is required: say why emergency access is needed", 2)
    settings = load_settings(log_format="console", quiet=True)
    if ttl_minutes * 60 > settings.jwt_max_ttl_s:
        fail("--ttl-minutes must not exceed DOCINGEST_JWT_MAX_TTL_SECONDS (the API refuses it)", 2)
    with config_errors_exit():
        secret = bootstrap.jwt_secret(settings)
        dsn = bootstrap.database_url(settings)

    async def run() -> break_glass.Grant:
        async with await _connect(dsn) as conn:
            return await break_glass.create(conn, operator_id, reason.strip(), ttl_minutes)

    grant = run_async(run())
    typer.echo(
        mint_break_glass_token(
            secret,
            operator_id,
            grant.grant_id,
            int(grant.expires_at.timestamp()),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )


@break_glass_app.command("revoke")
def revoke_cmd(grant_id: Annotated[str, typer.Argument(help="The grant to end now.")]) -> None:
    """Revoke a grant: its token is refused from the next request on."""
    gid = _uuid(grant_id, "GRANT_ID")
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        dsn = bootstrap.database_url(settings)

    async def run() -> bool:
        async with await _connect(dsn) as conn:
            return await break_glass.revoke(conn, gid)

    if not run_async(run()):
        fail(f"no active grant {gid}", 1)
    typer.echo(f"revoked {gid}")
