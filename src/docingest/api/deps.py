"""FastAPI dependencies as `Annotated` aliases.

Every dependency is `async def`, even those that never await: FastAPI runs a plain `def`
dependency in its thread pool, a hand-off to another thread and back for each one on every
request (with the cores busy, each waits for the scheduler). Those below only read the app
state and check an HS256 token, microseconds of work, so they run on the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Request
from psycopg_pool import AsyncConnectionPool

from docingest.api import audit, break_glass
from docingest.api.auth import Principal
from docingest.api.errors import ApiError, not_found
from docingest.api.state import AppState
from docingest.store.db import DictConn


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.docingest
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_any_principal(
    request: Request, state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """The token's principal, break-glass tokens included (their grant is not checked yet)."""
    principal = state.tokens.principal(authorization)
    audit.remember(request, principal)
    return principal


async def get_principal(principal: Annotated[Principal, Depends(get_any_principal)]) -> Principal:
    """A user's or admin's principal: break-glass tokens are refused (403)."""
    break_glass.refuse_writes(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "admin role required")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


async def get_conn(state: StateDep) -> AsyncIterator[DictConn]:
    pool: AsyncConnectionPool[DictConn] = state.pool
    async with pool.connection() as conn:
        yield conn


ConnDep = Annotated[DictConn, Depends(get_conn)]


async def get_reader(
    principal: Annotated[Principal, Depends(get_any_principal)], conn: ConnDep
) -> Principal:
    """For single document and job reads: a user, or a break-glass operator whose grant is
    active in the database now (else 401). Use `principal.owner_scope` to scope queries."""
    await break_glass.require_active_grant(conn, principal)
    return principal


ReaderDep = Annotated[Principal, Depends(get_reader)]


def parse_id(raw: str, what: str) -> UUID:
    """Path ids that are not UUIDs answer 404 like unknown ones (no shape oracle)."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found(what) from None
