"""Production start-up under least-privilege roles: the owner migrates with `docingest db
upgrade`, then `docingest api --no-migrate` and `docingest worker --no-migrate` run as LOGIN
roles in `docingest_api` / `docingest_worker` (no DDL rights) and a real upload completes.
Started on a schema that is not current, the worker refuses with one line and the API waits
(not ready) until the owner migrates."""

from __future__ import annotations

import base64
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from docingest.security.bearer_tokens import mint_token
from docingest.store import migrate
from docingest.testing.procs import free_port, run_process, wait_http_ok
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, run_cli, stack_env
from tests.helpers import login_role_dsns

PDF = EXAMPLES / "sbc_uhc_bronze_2026.pdf"
DOCINGEST = [sys.executable, "-m", "docingest"]


def _process_env(role_dsn: str, home: Path, blobs: Path) -> dict[str, str]:
    """What a deployment gives each process: its own DSN and home, the shared blob store,
    every secret from the environment (no local secret files)."""
    return stack_env(
        role_dsn,
        home,
        DOCINGEST_STORAGE_URL=f"file://{blobs}",
        DOCINGEST_MASTER_KEY=base64.b64encode(b"k" * 32).decode(),
        DOCINGEST_WEBHOOK_SECRET="w" * 40,
    )


def _wait_complete(base: str, job_id: str, headers: dict[str, str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    status = "unknown"
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=5)
        response.raise_for_status()
        status = response.json()["status"]
        if status == "complete" or status.startswith("failed_"):
            return status
        time.sleep(0.2)  # poll interval; the condition is the job's status
    return status


def _logged_in_roles(owner_dsn: str) -> set[str]:
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
            # connections only: an autovacuum worker on this database has no user (None)
            " AND backend_type = 'client backend'"
        ).fetchall()
    return {row[0] for row in rows}


def test_api_and_worker_run_under_their_own_roles(fresh_dsn: str, tmp_path: Path) -> None:
    owner = stack_env(fresh_dsn, tmp_path / "owner")
    upgraded = run_cli(owner, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    with login_role_dsns(fresh_dsn) as roles:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        blobs = tmp_path / "blobs"
        api_env = _process_env(roles["docingest_api"], tmp_path / "api", blobs)
        worker_env = _process_env(roles["docingest_worker"], tmp_path / "worker", blobs)
        api_cmd = [*DOCINGEST, "api", "--no-migrate", "--port", str(port)]
        worker_cmd = [*DOCINGEST, "worker", "--no-migrate", "--concurrency", "1"]
        with (
            run_process(api_cmd, env=api_env, ready_url=f"{base}/readyz", timeout_s=60),
            run_process(worker_cmd, env=worker_env) as worker,
        ):
            headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, uuid.uuid4())}"}
            with PDF.open("rb") as fh:
                response = httpx.post(
                    f"{base}/v1/documents",
                    headers=headers,
                    files={"file": (PDF.name, fh, "application/pdf")},
                    timeout=30,
                )
            assert response.status_code == 202, response.text
            status = _wait_complete(base, response.json()["job_id"], headers, timeout_s=120)
            assert status == "complete", f"job ended {status}; worker exit {worker.poll()}"
            # every connection of both processes is one of their roles, none is the owner's
            assert _logged_in_roles(fresh_dsn) == {urlsplit(d).username for d in roles.values()}
    assert migrate.current_version(fresh_dsn) == migrate.head()


def test_worker_refuses_and_api_waits_until_the_schema_is_current(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """A rolling upgrade: the new build starts while the schema is one version behind."""
    behind = migrate.available()[-2].version  # the previous migration (numbers may skip)
    migrate.upgrade(fresh_dsn, behind)
    env = _process_env(fresh_dsn, tmp_path / "home", tmp_path / "blobs")
    refused = run_cli(env, "worker", "--no-migrate", timeout=60)
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert f"schema is at version {behind}" in lines[0] and "docingest db upgrade" in lines[0]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_cmd = [*DOCINGEST, "api", "--no-migrate", "--port", str(port)]
    with run_process(api_cmd, env=env, ready_url=f"{base}/healthz", timeout_s=60):
        not_ready = httpx.get(f"{base}/readyz", timeout=5)
        assert not_ready.status_code == 503
        assert not_ready.json()["reason"] == "migrations not current"
        assert migrate.current_version(fresh_dsn) == behind  # --no-migrate applied nothing
        upgraded = run_cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        wait_http_ok(f"{base}/readyz", timeout_s=30)
