"""Issuer and audience checks (DOCINGEST_JWT_ISSUER / DOCINGEST_JWT_AUDIENCE): when set,
a token must carry exactly that `iss` / `aud`; when unset, neither claim is looked at."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from docingest.api.auth import authenticate
from docingest.bootstrap import Runtime
from docingest.security.bearer_tokens import mint_token
from tests.helpers import make_runtime

ISSUER = "https://project.supabase.co/auth/v1"
AUDIENCE = "authenticated"


@pytest.fixture
def rt(dsn: str, tmp_path: Path) -> Runtime:
    return make_runtime(
        dsn, tmp_path / "home", DOCINGEST_JWT_ISSUER=ISSUER, DOCINGEST_JWT_AUDIENCE=AUDIENCE
    )


def _token(rt: Runtime, **claims: Any) -> str:
    base = {"sub": str(uuid.uuid4()), "exp": int(time.time()) + 60}
    body = {k: v for k, v in {**base, **claims}.items() if v is not None}
    return jwt.encode(body, rt.jwt_secret, algorithm="HS256")


async def test_issuer_and_audience_are_required_when_configured(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    cases = {
        "right": (_token(rt, iss=ISSUER, aud=AUDIENCE), 200),
        "right_aud_in_list": (_token(rt, iss=ISSUER, aud=["other", AUDIENCE]), 200),
        "wrong_iss": (_token(rt, iss="https://evil.example/auth/v1", aud=AUDIENCE), 401),
        "wrong_aud": (_token(rt, iss=ISSUER, aud="anon"), 401),
        "missing_iss": (_token(rt, aud=AUDIENCE), 401),
        "missing_aud": (_token(rt, iss=ISSUER), 401),
    }
    for name, (token, status) in cases.items():
        r = await client.get("/v1/documents", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, name
    # `docingest token` mints with the configured claims, so local tokens keep working
    minted = mint_token(rt.jwt_secret, uuid.uuid4(), issuer=ISSUER, audience=AUDIENCE)
    r = await client.get("/v1/documents", headers={"Authorization": f"Bearer {minted}"})
    assert r.status_code == 200


def test_claims_are_not_checked_when_unset() -> None:
    secret = "s" * 40
    user = uuid.uuid4()
    token = jwt.encode(
        {"sub": str(user), "exp": int(time.time()) + 60, "iss": "anyone", "aud": "anything"},
        secret,
        algorithm="HS256",
    )
    assert authenticate(f"Bearer {token}", secret).user_id == user
