"""Audit retention keeps six years of what HIPAA requires and prunes anonymous noise sooner;
tokens live at most DOCINGEST_JWT_MAX_TTL_SECONDS; the CLI mints no token it would refuse."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from typer.testing import CliRunner

from docingest.bootstrap import Runtime
from docingest.cli import app
from docingest.config import AUDIT_RETENTION_FLOOR_DAYS, ConfigError, Settings
from docingest.ops.audit_retention import prune
from docingest.store.db import open_pool
from docingest.store.events import ANONYMOUS_REFUSALS


async def test_prune_keeps_six_years_and_drops_old_noise(dsn: str) -> None:
    rows = [  # (action, age in days)
        ("document.read", 2000),  # inside six years: kept
        ("document.read", AUDIT_RETENTION_FLOOR_DAYS + 5),  # past it: removed
        (ANONYMOUS_REFUSALS, 30),  # young noise: kept
        (ANONYMOUS_REFUSALS, 120),  # old noise: removed
        ("auth.refused", 120),  # a signed-in caller's refusal is no noise: kept
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for action, days in rows:
            conn.execute(
                "INSERT INTO docingest.events (at, actor, action, outcome)"
                " VALUES (now() - make_interval(days => %s), 'x', %s, 'ok')",
                (days, action),
            )
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            kw = {
                "retention": timedelta(days=AUDIT_RETENTION_FLOOR_DAYS),
                "noise_retention": timedelta(days=90),
            }
            dry = await prune(conn, dry_run=True, **kw)  # type: ignore[arg-type]
            assert (dry.noise, dry.expired) == (1, 1)
            done = await prune(conn, **kw)  # type: ignore[arg-type]
            assert (done.noise, done.expired) == (1, 1)
    finally:
        await pool.close()
    with psycopg.connect(dsn) as conn:
        left = conn.execute(
            "SELECT action, extract(day FROM now() - at)::int FROM docingest.events ORDER BY 2"
        ).fetchall()
    assert left == [(ANONYMOUS_REFUSALS, 30), ("auth.refused", 120), ("document.read", 2000)]


def test_retention_cannot_go_below_six_years() -> None:
    with pytest.raises(ConfigError, match="DOCINGEST_AUDIT_RETENTION_DAYS"):
        Settings.from_env({"DOCINGEST_AUDIT_RETENTION_DAYS": "365"})


async def test_token_lifetime_is_capped(client: httpx.AsyncClient, rt: Runtime) -> None:
    user, now = str(uuid.uuid4()), int(time.time())
    cap = rt.settings.jwt_max_ttl_s

    def token(**claims: int) -> dict[str, str]:
        value = jwt.encode({"sub": user, **claims}, rt.jwt_secret, algorithm="HS256")
        return {"Authorization": f"Bearer {value}"}

    forever = token(exp=253402300799)  # 9999-12-31
    long_lived = token(iat=now - 10, exp=now + cap + 60)
    backdated = token(iat=now - 2 * cap, exp=now + 60)  # lives 2 x cap in total
    fine = token(iat=now, exp=now + 600)
    for headers in (forever, long_lived, backdated):
        r = await client.get("/v1/documents", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    assert (await client.get("/v1/documents", headers=fine)).status_code == 200


@pytest.mark.parametrize("ttl", ["0", "-100", "86401"])
def test_cli_refuses_tokens_outside_the_lifetime(tmp_path: Path, ttl: str) -> None:
    env = {"DOCINGEST_HOME": str(tmp_path), "DOCINGEST_JWT_SECRET": "s" * 40}
    result = CliRunner().invoke(app, ["token", "--user", str(uuid.uuid4()), "--ttl", ttl], env=env)
    assert result.exit_code == 2 and "--ttl" in result.output
    ok = CliRunner().invoke(app, ["token", "--user", str(uuid.uuid4()), "--ttl", "60"], env=env)
    assert ok.exit_code == 0
    claims = jwt.decode(ok.output.strip(), "s" * 40, algorithms=["HS256"], audience="authenticated")
    assert claims["exp"] - claims["iat"] == 60
