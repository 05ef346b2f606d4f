"""The CLI as a user runs it: db, token, status, and a worker stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg

from docingest.store import migrate
from docingest.store.db import open_pool
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, run_cli, stack_env
from tests.helpers import make_runtime, upload


def test_db_commands(fresh_dsn: str, tmp_path: Path) -> None:
    env = stack_env(fresh_dsn, tmp_path)
    assert run_cli(env, "db", "current").stdout.strip() == f"current: 0; head: {migrate.head()}"
    up = run_cli(env, "db", "upgrade")
    assert up.returncode == 0 and f"current: {migrate.head()}" in up.stdout
    down = run_cli(env, "db", "downgrade", "--to", "0")
    assert down.returncode == 0 and "current: 0" in down.stdout
    assert migrate.current_version(fresh_dsn) == 0


def test_token_and_bad_settings(dsn: str, tmp_path: Path) -> None:
    env = stack_env(dsn, tmp_path)
    user = str(uuid.uuid4())
    out = run_cli(env, "token", "--user", user, "--admin")
    claims = jwt.decode(
        out.stdout.strip(), JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    assert claims["sub"] == user and claims["role"] == "admin" and claims["exp"] > time.time()
    bad = run_cli({**env, "DOCINGEST_MAX_UPLOAD_BYTES": "lots"}, "status")
    assert bad.returncode == 2
    assert "DOCINGEST_MAX_UPLOAD_BYTES must be an integer" in bad.stderr
    assert len([line for line in bad.stderr.splitlines() if line.strip()]) == 1


def test_worker_sigterm_releases_work_and_status_reports_it(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    httpx.post(f"{fake_openai}/control", json={"latency_ms": 400}).raise_for_status()
    home = tmp_path / "home"
    env = stack_env(
        dsn,
        home,
        DOCINGEST_EMBEDDER="openai",
        DOCINGEST_OPENAI_BASE_URL=f"{fake_openai}/v1",
        DOCINGEST_OPENAI_API_KEY="sk-test",
        DOCINGEST_EMBED_DIMENSIONS="64",
        DOCINGEST_EMBED_BATCH_SIZE="2",
        DOCINGEST_LEASE_SECONDS="6",
    )
    rt = make_runtime(dsn, home)

    async def seed() -> str:
        pool = await open_pool(dsn)
        async with pool.connection() as conn:
            res = await upload(
                conn, rt, uuid.uuid4(), EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
            )
        await pool.close()
        return str(res.job_id)

    job_id = asyncio.run(seed())
    worker = subprocess.Popen(
        [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT status, (progress->>'embeds_done')::int FROM docingest.upload_jobs WHERE job_id = %s",
                    (job_id,),
                ).fetchone()
            if row and row[0] == "embedding_in_progress" and row[1] > 0:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError("worker never started embedding")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    with psycopg.connect(dsn) as conn:
        status, claimed_by, done = conn.execute(
            "SELECT status, claimed_by, (progress->>'embeds_done')::int FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()  # type: ignore[misc]
    assert (
        status == "embedding_in_progress" and claimed_by is None and done > 0
    )  # released, progress kept
    report = json.loads(run_cli(env, "status", "--json").stdout)
    assert report["by_status"] == {"embedding_in_progress": 1}
    assert report["in_flight"] == 0 and report["oldest_waiting_job"] == job_id
    httpx.post(f"{fake_openai}/control", json={"latency_ms": 0}).raise_for_status()
    drained = run_cli(env, "worker", "--once")
    assert drained.returncode == 0, drained.stderr[-2000:]
    report = json.loads(run_cli(env, "status", "--json").stdout)
    assert report["by_status"] == {"complete": 1} and report["failures"] == {}
