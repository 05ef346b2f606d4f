"""Disaster-recovery drill for `docingest backup create|verify|restore` as real processes:
a backup taken while a worker is embedding, the schema and blob store destroyed, a restore
into the empty database that behaves the same, and tampered backups refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from docingest.bootstrap import Runtime
from docingest.ops import backup
from docingest.store.blobs import LocalBlobStore
from docingest.store.db import open_pool
from docingest.store.keys import MasterKey
from docingest.store.search import search
from docingest.testing.procs import wait_for
from docingest.worker.runner import run_worker
from tests.conftest import CORPUS, EXAMPLES
from tests.e2e.conftest import run_cli, stack_env
from tests.helpers import make_runtime, upload

PDFS = sorted(EXAMPLES.glob("*.pdf"))
IN_FLIGHT_PDF = CORPUS / "real" / "form_claim_care_health_advantage.pdf"
QUERIES = ("deductible", "out-of-pocket limit", "emergency room visit", "prescription drugs")


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return backup.row_counts(conn)


def job_row(dsn: str, job_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute(
            "SELECT status::text, claimed_by, lease_expires_at, progress, updated_at"
            " FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row


async def ingest(rt: Runtime, user: uuid.UUID, paths: list[Path]) -> list[Any]:
    pool = await open_pool(rt.dsn)
    try:
        async with pool.connection() as conn:
            return [await upload(conn, rt, user, p) for p in paths]
    finally:
        await pool.close()


async def search_all(rt: Runtime, user: uuid.UUID) -> list[list[tuple[str, float]]]:
    e = rt.embedder
    pool = await open_pool(rt.dsn)
    try:
        async with pool.connection() as conn:
            out = []
            for q in QUERIES:
                [vec] = (await e.embed([q])).vectors
                rows = await search(
                    conn, user, query=q, query_vector=vec, model=e.model, version=e.version, k=5
                )
                out.append([(str(r["chunk_id"]), round(float(r["score"]), 6)) for r in rows])
            return out
    finally:
        await pool.close()


def test_backup_while_embedding_restores_after_disaster(dsn: str, tmp_path: Path) -> None:
    home, bk = tmp_path / "home", tmp_path / "backup"
    rt = make_runtime(dsn, home)
    user, other = uuid.uuid4(), uuid.uuid4()
    originals = asyncio.run(ingest(rt, user, PDFS))
    assert asyncio.run(run_worker(rt, concurrency=2, once=True, handle_signals=False)) == 3
    before = asyncio.run(search_all(rt, user))
    assert all(len(hits) == 5 for hits in before)
    [in_flight] = asyncio.run(ingest(rt, other, [IN_FLIGHT_PDF]))

    # A worker embedding under a 2-requests-per-minute budget: it embeds two chunks, then
    # holds its lease (heartbeating) while the shared budget makes it wait.
    env = stack_env(dsn, home, DOCINGEST_EMBED_RPM="2", DOCINGEST_EMBED_BATCH_SIZE="1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"],
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (
                (r := job_row(dsn, in_flight.job_id))["status"] == "embedding_in_progress"
                and r["progress"]["embeds_done"] > 0
                and r["claimed_by"] is not None
            ),
            90,
            "the worker did not start embedding",
        )
        made = run_cli(env, "backup", "create", str(bk))
        assert made.returncode == 0, made.stderr
        manifest = json.loads((bk / "manifest.json").read_text())
        # The worker held the job when the snapshot was taken: it still does, or it let the
        # job go after the snapshot (a job that waited a whole budget window, ~61 s, is
        # deferred, and a backup on a loaded machine can outlast that).
        row = job_row(dsn, in_flight.job_id)
        snapshot_at = datetime.fromisoformat(manifest["snapshot_at"])
        assert row["claimed_by"] is not None or row["updated_at"] > snapshot_at, row
    finally:
        worker.send_signal(signal.SIGKILL)  # the disaster takes the worker too
        worker.wait(timeout=30)
    assert (
        manifest["row_counts"]["documents"] == 4 and manifest["row_counts"]["document_chunks"] > 0
    )
    verified = run_cli(env, "backup", "verify", str(bk))
    assert verified.returncode == 0 and f"ok: {len(manifest['files'])} files" in verified.stdout

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA docingest CASCADE")
        conn.execute("DROP EXTENSION vector")
    shutil.rmtree(home / "blobs")
    destroyed_at = datetime.now(UTC)

    started = time.monotonic()
    restored = run_cli(env, "backup", "restore", str(bk))
    rto = time.monotonic() - started
    gap = (destroyed_at - datetime.fromisoformat(manifest["snapshot_at"])).total_seconds()
    print(
        f"\nDR drill: RTO {rto:.2f} s (backup restore, wall); the drill's own backup -> disaster"
        f" gap {gap:.2f} s (the RPO is the backup schedule's: docs/backup.md)"
    )
    assert restored.returncode == 0, restored.stderr
    assert "1 unfinished jobs resumed" in restored.stdout

    assert table_counts(dsn) == manifest["row_counts"]
    assert asyncio.run(search_all(rt, user)) == before
    job = job_row(dsn, in_flight.job_id)
    assert job["status"] == "embedding_in_progress" and job["claimed_by"] is None
    assert job["progress"]["embeds_done"] > 0

    again = asyncio.run(ingest(rt, user, PDFS))
    assert [a.duplicate for a in again] == [True] * 3
    assert [a.document_id for a in again] == [o.document_id for o in originals]
    assert table_counts(dsn)["documents"] == 4

    # the job in flight at backup time resumes and completes on the restored system
    assert asyncio.run(run_worker(rt, concurrency=1, once=True, handle_signals=False)) == 1
    job = job_row(dsn, in_flight.job_id)
    assert job["status"] == "complete"
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM docingest.document_chunks WHERE document_id = %s",
            (in_flight.document_id,),
        ).fetchone()
    assert row is not None and row[0] == job["progress"]["chunks_total"] > 0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def small_backup(dsn: str, tmp_path: Path) -> Path:
    rt = make_runtime(dsn, tmp_path / "home")
    asyncio.run(ingest(rt, uuid.uuid4(), PDFS[:1]))
    assert asyncio.run(run_worker(rt, concurrency=1, once=True, handle_signals=False)) == 1
    bk = tmp_path / "backup"
    backup.create(rt.dsn, rt.blobs, bk)
    return bk


@pytest.mark.parametrize("target", ["db.dump", "blob", "manifest.json"])
def test_tampered_backup_is_refused(
    small_backup: Path, fresh_dsn: str, tmp_path: Path, target: str
) -> None:
    name = (
        next(p for p in small_backup.rglob("*.enc")).relative_to(small_backup).as_posix()
        if target == "blob"
        else target
    )
    _flip_byte(small_backup / name)
    env = stack_env(fresh_dsn, tmp_path / "home")
    verified = run_cli(env, "backup", "verify", str(small_backup))
    assert verified.returncode == 1 and name in verified.stderr, verified.stderr
    restored = run_cli(env, "backup", "restore", str(small_backup))
    assert restored.returncode == 1 and name in restored.stderr, restored.stderr
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('docingest')").fetchone() == (None,)


def test_restore_over_data_needs_force_and_sets_the_old_schema_aside(
    small_backup: Path, dsn: str, tmp_path: Path
) -> None:
    rt = make_runtime(dsn, tmp_path / "home")  # the system the backup came from, intact
    with pytest.raises(backup.BackupError, match="already holds docingest data"):
        backup.restore(rt.dsn, rt.blobs, small_backup)
    done = backup.restore(rt.dsn, rt.blobs, small_backup, force=True)
    assert done.set_aside is not None and done.blobs_copied == 0  # identical blobs kept
    assert (
        table_counts(dsn) == json.loads((small_backup / "manifest.json").read_text())["row_counts"]
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{done.set_aside}".documents').fetchone()
    assert row == (1,)


def test_restore_with_another_master_key_is_refused_before_the_database(
    small_backup: Path, fresh_dsn: str, tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "other-blobs", MasterKey.generate())
    with pytest.raises(backup.BackupError, match="does not open with the configured master key"):
        backup.restore(fresh_dsn, store, small_backup)
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('docingest')").fetchone() == (None,)


def test_scheduled_database_only_backup_restores_against_the_blobs_in_place(
    dsn: str, fresh_dsn: str, tmp_path: Path
) -> None:
    """What the backup timer and CronJob run (deploy/), for a store whose bucket versioning
    keeps the blobs: `backup create --timestamped --database-only`. A restore finds every
    referenced blob in the store; with one missing it refuses before the database."""
    home = tmp_path / "home"
    rt = make_runtime(dsn, home)
    asyncio.run(ingest(rt, uuid.uuid4(), PDFS[:1]))
    assert asyncio.run(run_worker(rt, concurrency=1, once=True, handle_signals=False)) == 1
    made = run_cli(
        stack_env(dsn, home), "backup", "create", str(tmp_path / "bk"), "--timestamped",
        "--database-only",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [bk] = (tmp_path / "bk").iterdir()  # DIR/<UTC time>
    assert datetime.strptime(bk.name, "%Y%m%dT%H%M%SZ")
    manifest = json.loads((bk / "manifest.json").read_text())
    assert list(manifest["files"]) == ["db.dump"] and len(manifest["blobs_in_store"]) == 2
    assert not (bk / "blobs").exists()

    missing = home / "blobs" / manifest["blobs_in_store"][0]
    aside = missing.with_name(missing.name + ".aside")
    missing.rename(aside)
    with pytest.raises(backup.BackupError, match="not in the blob store"):
        backup.restore(fresh_dsn, rt.blobs, bk)
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('docingest')").fetchone() == (None,)
    aside.rename(missing)
    done = backup.restore(fresh_dsn, rt.blobs, bk)
    assert done.blobs_copied == 0 and done.row_counts == manifest["row_counts"]
