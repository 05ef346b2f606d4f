"""Bearer JWT (HS256, Supabase-compatible): user id in `sub`, `role: admin` for operations,
`role: break_glass` with a `grant` id for emergency reads (the grant itself is checked in the
database on each request, api/break_glass.py).

Tokens must carry `exp`; `alg: none` and any algorithm but HS256 are refused. With an
issuer or audience configured (DOCINGEST_JWT_ISSUER / DOCINGEST_JWT_AUDIENCE) the token must
carry that `iss` / `aud`; unset, the claim is not checked. A token may live at most
DOCINGEST_JWT_MAX_TTL_SECONDS (default one day): both `exp - iat` (when `iat` is present) and
`exp - now` must stay within it, so a leaked token with `exp` in the year 9999 opens nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from uuid import UUID

import jwt

from docingest.api.errors import ApiError

ALGORITHM = "HS256"
BREAK_GLASS_ROLE = "break_glass"


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    is_admin: bool
    grant_id: UUID | None = None  # set for break-glass tokens: `user_id` is then the operator

    @property
    def actor(self) -> str:
        return f"break_glass:{self.user_id}" if self.grant_id else f"user:{self.user_id}"

    @property
    def owner_scope(self) -> UUID | None:
        """Whose records reads are limited to: the caller's own, or anyone's (None) under an
        active break-glass grant."""
        return None if self.grant_id else self.user_id


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="docingest"'})


def authenticate(
    authorization: str | None,
    secret: str,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    max_ttl_s: int | None = None,
) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise unauthorized("missing bearer token")
    token = authorization[7:].strip()
    required = ["exp", "sub"]
    required += ["iss"] if issuer is not None else []
    required += ["aud"] if audience is not None else []
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("invalid token") from None
    if max_ttl_s is not None and _lives_too_long(claims, max_ttl_s):
        raise unauthorized("token lifetime exceeds the allowed maximum")
    try:
        user_id = UUID(str(claims["sub"]))
    except ValueError:
        raise unauthorized("token subject is not a user id") from None
    if claims.get("role") != BREAK_GLASS_ROLE:
        return Principal(user_id=user_id, is_admin=claims.get("role") == "admin")
    try:
        grant_id = UUID(str(claims["grant"]))
    except (KeyError, ValueError):
        raise unauthorized("break-glass token without a grant id") from None
    return Principal(user_id=user_id, is_admin=False, grant_id=grant_id)


@dataclass(frozen=True)
class TokenPolicy:
    """How this API verifies bearer tokens (one instance per app, shared by the admission
    lanes and the route dependencies, so both decide alike)."""

    secret: str = field(repr=False)
    issuer: str | None = None
    audience: str | None = None
    max_ttl_s: int | None = None

    def principal(self, authorization: str | None) -> Principal:
        return authenticate(
            authorization,
            self.secret,
            issuer=self.issuer,
            audience=self.audience,
            max_ttl_s=self.max_ttl_s,
        )


def _lives_too_long(claims: dict[str, object], max_ttl_s: int) -> bool:
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return True
    if exp - time.time() > max_ttl_s:
        return True
    return isinstance(iat, int | float) and exp - iat > max_ttl_s


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
