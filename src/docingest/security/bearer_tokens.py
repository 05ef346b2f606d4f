"""Bearer tokens as this API verifies them (api/auth.py): HS256, user id in `sub`, `role`
(`admin`, `authenticated`, or `break_glass` with a `grant` id), `iat`, `exp`, `aud` and an
optional `iss`. Minting lives here, below the API, because the command line (`docingest
token`, break-glass grants) and `docingest validate` mint tokens too without importing the
API."""

from __future__ import annotations

import time
from uuid import UUID

import jwt

ALGORITHM = "HS256"
BREAK_GLASS_ROLE = "break_glass"


def mint_token(
    secret: str,
    user_id: UUID,
    *,
    admin: bool = False,
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    now = int(time.time())
    role = "admin" if admin else "authenticated"
    return _encode(secret, user_id, role, now + ttl_s, {}, issuer=issuer, audience=audience)


def mint_break_glass_token(
    secret: str,
    operator_id: UUID,
    grant_id: UUID,
    expires_at: int,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A token for one break-glass grant; `expires_at` (epoch s) is the grant's expiry."""
    extra = {"grant": str(grant_id)}
    return _encode(
        secret, operator_id, BREAK_GLASS_ROLE, expires_at, extra, issuer=issuer, audience=audience
    )


def _encode(
    secret: str,
    sub: UUID,
    role: str,
    exp: int,
    extra: dict[str, str],
    *,
    issuer: str | None,
    audience: str | None,
) -> str:
    claims = {
        "sub": str(sub),
        "role": role,
        "iat": int(time.time()),
        "exp": exp,
        "aud": audience or "authenticated",
        **({"iss": issuer} if issuer is not None else {}),
        **extra,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
