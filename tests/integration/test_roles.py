"""Least-privilege database roles (migration 0005): the API role appends audit rows but cannot
change or remove them, neither role can run DDL, and a real upload + pipeline run completes
with the API and the worker each logged in under its own role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from docingest import bootstrap
from docingest.config import Settings
from docingest.store import documents, migrate
from docingest.store.db import open_pool
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import counts, file_chunks, login_role_dsns

PDF = EXAMPLES / "sbc_aetna_silver_2025.pdf"


def _refused(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_api_role_appends_audit_rows_but_cannot_alter_them(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET ROLE docingest_api")
        conn.execute(
            "INSERT INTO docingest.events (actor, action, outcome) VALUES ('t', 'a', 'ok')"
        )
        _refused(conn, "UPDATE docingest.events SET outcome = 'changed'")
        _refused(conn, "DELETE FROM docingest.events")
        _refused(conn, "TRUNCATE docingest.events")
        _refused(conn, "ALTER TABLE docingest.events DISABLE TRIGGER events_no_update")
        _refused(conn, "CREATE TABLE docingest.sneaky (x int)")
        _refused(conn, "DELETE FROM docingest.schema_migrations")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT actor, outcome FROM docingest.events").fetchall() == [
            ("t", "ok")
        ]


def test_worker_role_cannot_remove_documents_or_audit_rows(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET ROLE docingest_worker")
        conn.execute(
            "INSERT INTO docingest.events (actor, action, outcome) VALUES ('w', 'a', 'ok')"
        )
        _refused(conn, "DELETE FROM docingest.events")
        _refused(conn, "DELETE FROM docingest.documents")
        _refused(
            conn, "INSERT INTO docingest.webhook_log (webhook_id, expires_at) VALUES ('x', now())"
        )


def test_migration_is_idempotent_for_existing_roles(fresh_dsn: str) -> None:
    """The roles already exist (created by the template database): upgrading, downgrading and
    upgrading again in another database must neither fail nor leave grants behind."""
    migrate.upgrade(fresh_dsn)
    migrate.downgrade(fresh_dsn, 4)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        assert conn.execute(
            "SELECT has_table_privilege('docingest_api', 'docingest.events', 'INSERT')"
        ).fetchone() == (False,)
    migrate.upgrade(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        granted = conn.execute(
            "SELECT has_table_privilege('docingest_api', 'docingest.events', 'INSERT'),"
            " has_table_privilege('docingest_api', 'docingest.events', 'DELETE')"
        ).fetchone()
    assert granted == (True, False)


@pytest.fixture
def login_dsns(dsn: str) -> Iterator[dict[str, str]]:
    with login_role_dsns(dsn) as dsns:
        yield dsns


async def test_pipeline_runs_under_least_privilege_roles(
    dsn: str, login_dsns: dict[str, str], tmp_path: Path
) -> None:
    def runtime(role_dsn: str) -> bootstrap.Runtime:
        env = {"DOCINGEST_HOME": str(tmp_path / "home"), "DOCINGEST_DATABASE_URL": role_dsn}
        return bootstrap.runtime(Settings.from_env(env), migrate_schema=False)

    api_rt, worker_rt = (
        runtime(login_dsns["docingest_api"]),
        runtime(login_dsns["docingest_worker"]),
    )
    api_pool = await open_pool(api_rt.dsn, min_size=1, max_size=1, name="api")
    async with api_pool, api_pool.connection() as conn:
        assert (await (await conn.execute("SELECT current_user")).fetchone() or {})[
            "current_user"
        ].startswith("t_api_")
        result = await documents.accept_upload(
            conn,
            api_rt.blobs,
            user_id=uuid.uuid4(),
            filename_of=lambda: PDF.name,
            chunks=file_chunks(PDF),
            max_bytes=api_rt.settings.max_upload_bytes,
            actor="test",
        )
    assert await run_worker(worker_rt, concurrency=1, once=True, handle_signals=False) == 1
    with psycopg.connect(dsn) as conn:
        status = conn.execute(
            "SELECT status FROM docingest.upload_jobs WHERE job_id = %s", (result.job_id,)
        ).fetchone()
        # the worker, in its own role, merged the word index's pending list after promoting
        merged = conn.execute("SELECT docingest.merge_pending_words()").fetchone()
    assert status == ("complete",) and merged == (0,)
    assert counts(dsn)["document_chunks"] > 0
