"""`Stack.wait_terminal`, validate's wait for jobs: one connection for the whole wait (a
connection per poll started a server process ten times a second on the cores the scaling
points measure), a new one only after it failed, and a timeout that names what is left."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from docingest.ops.validation import stack as stack_module
from docingest.ops.validation.stack import Stack


def _jobs(dsn: str, n: int) -> list[str]:
    user, ids = uuid.uuid4(), []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            document_id, job_id = uuid.uuid4(), uuid.uuid4()
            conn.execute(
                "INSERT INTO docingest.documents (document_id, user_id, filename, mime,"
                " bytes_len, file_sha256, raw_path) VALUES (%s, %s, 'w.pdf', 'application/pdf',"
                " 1, %s, 'raw/w')",
                (document_id, user, f"{i:064x}"),
            )
            conn.execute(
                "INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path,"
                " correlation_id) VALUES (%s, %s, %s, 'raw/w', %s)",
                (job_id, user, document_id, uuid.uuid4()),
            )
            ids.append(str(job_id))
    return ids


def test_waits_on_one_connection_and_reconnects_after_losing_it(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = _jobs(dsn, 2)
    connects: list[str] = []
    real_connect = psycopg.connect

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        connects.append("connect")
        return real_connect(*args, **kwargs)

    polls = 0

    def between_polls(_seconds: float) -> None:
        """The wait's sleep: after the second poll its connection is killed, after the
        fourth the jobs complete."""
        nonlocal polls
        polls += 1
        with real_connect(dsn, autocommit=True) as conn:
            if polls == 2:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend'"
                ).fetchone()
                assert killed == (1,)
            if polls == 4:
                conn.execute(
                    "UPDATE docingest.upload_jobs SET status = 'complete'"
                    " WHERE job_id = ANY(%s::uuid[])",
                    (job_ids,),
                )

    monkeypatch.setattr(stack_module.psycopg, "connect", counting_connect)
    monkeypatch.setattr(stack_module.time, "sleep", between_polls)
    rows = Stack(tmp_path, dsn=dsn).wait_terminal(job_ids, 60)
    assert sorted(r["job_id"] for r in rows) == sorted(job_ids)
    assert {r["status"] for r in rows} == {"complete"}
    # polls 1-2 on the first connection, poll 3 finds it gone, polls 4-5 on the second
    assert polls == 4
    assert len(connects) == 2


def test_timeout_names_the_jobs_left(dsn: str, tmp_path: Path) -> None:
    job_ids = _jobs(dsn, 2)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="2 of 2 jobs not terminal"):
        Stack(tmp_path, dsn=dsn).wait_terminal(job_ids, 0)
    assert time.monotonic() - started < 5


def test_timeout_says_the_database_did_not_answer(dsn: str, tmp_path: Path) -> None:
    job_ids = _jobs(dsn, 1)
    gone = make_conninfo(dsn, dbname="no_such_database")  # the server refuses every connect
    with pytest.raises(TimeoutError, match="database did not answer") as raised:
        Stack(tmp_path, dsn=gone).wait_terminal(job_ids, 0)
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
