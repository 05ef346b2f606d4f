"""Bearer JWT (HS256, Supabase-compatible): user id in `sub`, `role: admin` for operations.

Tokens must carry `exp`; `alg: none` and any algorithm but HS256 are refused. With an
issuer or audience configured (DOCINGEST_JWT_ISSUER / DOCINGEST_JWT_AUDIENCE) the token must
carry that `iss` / `aud`; unset, the claim is not checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

import jwt

from docingest.api.errors import ApiError

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    is_admin: bool

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="docingest"'})


def authenticate(
    authorization: str | None,
    secret: str,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorized("missing bearer token")
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
        raise _unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise _unauthorized("invalid token") from None
    try:
        user_id = UUID(str(claims["sub"]))
    except ValueError:
        raise _unauthorized("token subject is not a user id") from None
    return Principal(user_id=user_id, is_admin=claims.get("role") == "admin")


def mint_token(
    secret: str,
    user_id: UUID,
    *,
    admin: bool = False,
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "admin" if admin else "authenticated",
        "iat": now,
        "exp": now + ttl_s,
        "aud": audience or "authenticated",
        **({"iss": issuer} if issuer is not None else {}),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
