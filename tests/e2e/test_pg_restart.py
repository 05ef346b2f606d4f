"""A real PostgreSQL crash-restart (`pg_ctl -m immediate`) while two `docingest worker`
processes hold jobs, at the default 60 s lease: the workers stay up, every job completes
well within one lease (a hand-back that failed while the server was down is written as soon
as it is back, never left to expire), no row is duplicated.

The test owns its own embedded server, so restarting it cannot disturb the session server
the other tests share."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from docingest.domain.states import JobStatus
from docingest.store import migrate
from docingest.store.chunks import fingerprint
from docingest.store.db import open_pool
from docingest.store.embedded_pg import restart_immediate, server_at
from docingest.testing.procs import stop_process, wait_for
from tests.conftest import CORPUS, EXAMPLES
from tests.e2e.conftest import stack_env
from tests.helpers import make_runtime, upload

# Long enough to be parsing or embedding when the server goes down, short enough for < 60 s.
PDFS = [
    *sorted(EXAMPLES.glob("*.pdf")),
    CORPUS / "real" / "policy_spd_kentucky_kehp_rx_2026.pdf",
    CORPUS / "real" / "sob_medicare_aetna_fcps_ppo_esa_2026.pdf",
]
DEFAULT_LEASE_S = 60
T = TypeVar("T")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Any]:
    server = server_at(tmp_path / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def _statuses(dsn: str) -> dict[str, tuple[JobStatus, str | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT job_id::text, status, claimed_by FROM docingest.upload_jobs"
        ).fetchall()
    return {job_id: (JobStatus(status), owner) for job_id, status, owner in rows}


def _sessions(dsn: str) -> int:
    """Worker processes registered (past start-up, able to claim)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM docingest.worker_sessions").fetchone()
    return int(row[0]) if row else 0


async def test_postgres_immediate_restart_every_job_completes(
    own_server: Any, tmp_path: Path
) -> None:
    missing = [p for p in PDFS if not p.exists()]
    assert not missing, f"test inputs missing: {missing}"
    with psycopg.connect(own_server.get_uri(), autocommit=True) as admin:
        admin.execute('CREATE DATABASE "docingest"')
    dsn: str = own_server.get_uri("docingest")
    migrate.upgrade(dsn)
    home = tmp_path / "home"
    env = stack_env(dsn, home)  # the default lease
    rt = make_runtime(dsn, home)
    worker_cmd = [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"]
    workers = [subprocess.Popen(worker_cmd, env=env, start_new_session=True) for _ in range(2)]
    try:
        # both workers up before the first upload: the one that started first could otherwise
        # take every job (each leaves its slot when it reaches embedding) before the other
        # claimed any
        wait_for(lambda: _sessions(dsn) >= 2, 60, "the workers did not both start")
        pool = await open_pool(dsn)
        try:
            async with pool.connection() as conn:
                uploads = [await upload(conn, rt, uuid.uuid4(), p) for p in PDFS]
        finally:
            await pool.close()
        # both workers have claimed a job, one holds a job right now
        owners: set[str] = set()

        def held_after_both_started() -> dict[str, JobStatus] | None:
            now = _statuses(dsn)
            owners.update(o for _, o in now.values() if o)
            held = {j: st for j, (st, o) in now.items() if o and not st.is_terminal}
            return held if len(owners) >= 2 else None

        affected = wait_for(held_after_both_started, 60, "the workers did not both claim jobs")
        pid_before = own_server.get_pid()
        restart_immediate(own_server)
        up = time.monotonic()
        assert own_server.get_pid() != pid_before

        def moved() -> bool:
            now = _statuses(dsn)
            return all(now[j][0] != st for j, st in affected.items())

        wait_for(moved, 60, "a job held at the restart did not move again")
        moved_s = time.monotonic() - up
        wait_for(
            lambda: all(st.is_terminal for st, _ in _statuses(dsn).values()),
            60,
            "jobs did not finish after the restart",
        )
        complete_s = time.monotonic() - up
        alive = [w.poll() is None for w in workers]
    finally:
        codes = [stop_process(w, grace_s=DEFAULT_LEASE_S / 2, kill_group=True) for w in workers]

    print(
        f"postgres immediate restart: {len(affected)} job(s) held;"
        f" moved again {moved_s:.2f}s and all complete {complete_s:.2f}s after the server was up"
    )
    assert alive == [True, True], f"a worker died with the database restart (codes {codes})"
    assert complete_s < DEFAULT_LEASE_S / 2  # no job waited for its lease to run out
    assert codes == [0, 0]  # and each still shut down cleanly on SIGTERM
    assert {st for st, _ in _statuses(dsn).values()} == {JobStatus.COMPLETE}
    pool = await open_pool(dsn)
    try:
        async with pool.connection() as conn:
            for res in uploads:
                cur = await conn.execute(
                    "SELECT progress FROM docingest.upload_jobs WHERE job_id = %s", (res.job_id,)
                )
                row = await cur.fetchone()
                assert row is not None
                rows = await fingerprint(conn, res.document_id)
                # one row per chunk ordinal and id: nothing written twice
                assert [r.chunk_ord for r in rows] == list(range(len(rows)))
                assert len({r.chunk_id for r in rows}) == len(rows)
                assert (
                    len(rows) == row["progress"]["chunks_total"] == row["progress"]["embeds_done"]
                )
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM docingest.document_chunk_buffer)"
                " + (SELECT count(*) FROM docingest.document_vector_buffer) AS n"
            )
            assert await cur.fetchone() == {"n": 0}
    finally:
        await pool.close()
