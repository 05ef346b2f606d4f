"""Dead and frozen workers, as real `docingest worker` processes.

- SIGKILL mid-embedding at the DEFAULT 60 s lease: the job is taken over in seconds,
  because PostgreSQL ends the dead process's session and its lock with it
  (`store/liveness.py`), and finishes with nothing written twice.
- SIGSTOP past the lease: a frozen process still holds its session, so only the lease
  (the backstop) frees its job, never earlier; once resumed, the frozen worker cannot
  write anything for the job it lost (fencing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from docingest.store.db import open_pool
from docingest.testing.procs import stop_process, wait_for
from tests.conftest import EXAMPLES
from tests.e2e.conftest import fake_openai_env, stack_env
from tests.helpers import make_runtime, upload, wait_past_restart_grace

PDF = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
EMBEDDING = ("embedding_queued", "embedding_in_progress")


def _job(dsn: str, job_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT status::text AS status, claimed_by, attempt, retry_count, lease_expires_at,"
            " updated_at, (progress->>'embeds_done')::int AS embeds_done,"
            " (progress->>'chunks_total')::int AS chunks_total"
            " FROM docingest.upload_jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row


def _pid(worker_id: str) -> int:
    return int(worker_id.split(":")[1])  # worker ids are host:pid:nonce


@contextmanager
def _workers(
    env: dict[str, str], logs: Path, n: int = 2
) -> Iterator[list[subprocess.Popen[bytes]]]:
    cmd = [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"]
    procs = []
    for i in range(n):
        with (logs / f"worker-{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
            )
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a frozen one must be able to stop
            stop_process(proc, grace_s=30, kill_group=True)


async def _upload_one(dsn: str, home: Path) -> uuid.UUID:
    rt = make_runtime(dsn, home)
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            return (await upload(conn, rt, uuid.uuid4(), PDF)).job_id
    finally:
        await pool.close()


def _env(dsn: str, home: Path, fake_openai: str, **extra: str) -> dict[str, str]:
    # batches of 4: many requests, so the job stays in embedding a while
    return stack_env(
        dsn, home, **fake_openai_env(fake_openai), DOCINGEST_EMBED_BATCH_SIZE="4", **extra
    )


def _mid_embedding(dsn: str, job_id: uuid.UUID) -> dict[str, Any] | None:
    row = _job(dsn, job_id)
    ok = row["status"] == "embedding_in_progress" and row["embeds_done"] and row["claimed_by"]
    return row if ok else None


async def test_sigkill_mid_embedding_is_taken_over_in_seconds_at_the_default_lease(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    httpx.post(f"{fake_openai}/control", json={"latency_ms": 300}).raise_for_status()
    home = tmp_path / "home"
    env = _env(dsn, home, fake_openai)  # DOCINGEST_LEASE_SECONDS unset: the 60 s default
    assert "DOCINGEST_LEASE_SECONDS" not in env
    job_id = await _upload_one(dsn, home)
    wait_past_restart_grace(dsn)
    with _workers(env, tmp_path) as procs:
        held = wait_for(lambda: _mid_embedding(dsn, job_id), 90, "job never mid-embedding")
        victim = _pid(held["claimed_by"])
        assert victim in {p.pid for p in procs}
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        at_kill = _job(dsn, job_id)  # the victim writes nothing more: its state at the kill
        assert at_kill["status"] in EMBEDDING and at_kill["claimed_by"] == held["claimed_by"]
        lease_left = (at_kill["lease_expires_at"] - at_kill["updated_at"]).total_seconds()

        taken = wait_for(
            lambda: (r := _job(dsn, job_id))["claimed_by"] not in (None, held["claimed_by"]) and r,
            60,
            "the dead worker's job was not taken over",
        )
        taken_s = time.monotonic() - killed
        wait_for(lambda: _job(dsn, job_id)["status"] == "complete", 60, "job did not complete")
        complete_s = time.monotonic() - killed
    print(f"SIGKILL at 60 s lease: taken over {taken_s:.2f} s, complete {complete_s:.2f} s")
    assert lease_left > 30  # the lease alone would have held the job far longer
    assert taken_s < 15 and complete_s < 30
    assert taken["attempt"] == held["attempt"] + 1 and taken["retry_count"] == 1
    with psycopg.connect(dsn) as conn:
        n, ords, buffered = conn.execute(
            "SELECT count(*), count(DISTINCT chunk_ord),"
            " (SELECT count(*) FROM docingest.document_vector_buffer)"
            " FROM docingest.document_chunks c JOIN docingest.upload_jobs j USING (document_id)"
            " WHERE j.job_id = %s",
            (job_id,),
        ).fetchone()  # type: ignore[misc]
    assert n == ords == _job(dsn, job_id)["chunks_total"] > 0 and buffered == 0


def _events_by(dsn: str, worker_id: str, after: datetime) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM docingest.events WHERE actor = %s AND at > %s",
            (f"worker:{worker_id}", after),
        ).fetchone()
    return int(row[0]) if row else -1


def _logged(path: Path, action: str, job_id: uuid.UUID) -> bool:
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("action") == action and record.get("job_id") == str(job_id):
            return True
    return False


async def test_sigstop_past_the_lease_the_lease_frees_the_job_and_fencing_holds(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    lease_s = 5  # the backstop's value does not matter here; the smallest allowed keeps it short
    httpx.post(f"{fake_openai}/control", json={"latency_ms": 700}).raise_for_status()
    home = tmp_path / "home"
    env = _env(dsn, home, fake_openai, DOCINGEST_LEASE_SECONDS=str(lease_s))
    job_id = await _upload_one(dsn, home)
    with _workers(env, tmp_path) as procs:
        held = wait_for(lambda: _mid_embedding(dsn, job_id), 90, "job never mid-embedding")
        frozen_id = held["claimed_by"]
        frozen = next(p for p in procs if p.pid == _pid(frozen_id))
        os.kill(frozen.pid, signal.SIGSTOP)
        at_stop = _job(dsn, job_id)
        assert at_stop["claimed_by"] == frozen_id

        taken = wait_for(
            lambda: (r := _job(dsn, job_id))["claimed_by"] not in (None, frozen_id) and r,
            60,
            "the frozen worker's job was never taken over",
        )
        # never before the frozen worker's last lease had run out (database clock)
        assert taken["updated_at"] >= at_stop["lease_expires_at"]
        assert taken["attempt"] == at_stop["attempt"] + 1

        os.kill(frozen.pid, signal.SIGCONT)  # it wakes up believing it still holds the job
        frozen_log = tmp_path / f"worker-{procs.index(frozen)}.log"
        wait_for(lambda: _logged(frozen_log, "lease_lost", job_id), 30, "no lease_lost logged")
        wait_for(lambda: _job(dsn, job_id)["status"] == "complete", 90, "job did not complete")
        assert frozen.poll() is None  # losing a job is not a crash
    assert _events_by(dsn, frozen_id, taken["updated_at"]) == 0  # nothing written after
    done = _job(dsn, job_id)
    assert done["attempt"] == taken["attempt"] and done["embeds_done"] == done["chunks_total"]
    with psycopg.connect(dsn) as conn:
        n, ords = conn.execute(
            "SELECT count(*), count(DISTINCT chunk_ord) FROM docingest.document_chunks c"
            " JOIN docingest.upload_jobs j USING (document_id) WHERE j.job_id = %s",
            (job_id,),
        ).fetchone()  # type: ignore[misc]
    assert n == ords == done["chunks_total"] > 0
