"""`docingest up` as a real process tree: uploads over HTTP, a worker SIGKILLed while it is
embedding, and every job still completes with no duplicate rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from docingest.domain.states import TERMINAL
from docingest.security.bearer_tokens import mint_token
from docingest.testing.procs import free_port, stop_process, wait_http_ok
from docingest.worker.embed_batcher import MAX_IN_FLIGHT
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, stack_env


def _wait(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def test_worker_killed_mid_embedding_every_job_completes(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    httpx.post(f"{fake_openai}/control", json={"latency_ms": 150}).raise_for_status()
    port = free_port()
    env = stack_env(
        dsn,
        tmp_path / "home",
        DOCINGEST_EMBEDDER="openai",
        DOCINGEST_OPENAI_BASE_URL=f"{fake_openai}/v1",
        DOCINGEST_OPENAI_API_KEY="sk-test",
        DOCINGEST_EMBED_DIMENSIONS="256",
        DOCINGEST_EMBED_BATCH_SIZE="8",
        DOCINGEST_LEASE_SECONDS="5",
    )
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "docingest",
            "up",
            "--workers",
            "2",
            "--concurrency",
            "1",
            "--port",
            str(port),
        ],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base}/readyz", 60, proc=up)
        user = uuid.uuid4()
        headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, user)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            job_ids = []
            for pdf in sorted(EXAMPLES.glob("*.pdf")):
                r = client.post(
                    "/v1/documents", files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")}
                )
                assert r.status_code == 202, r.text
                job_ids.append(r.json()["job_id"])

            def embedding_job() -> tuple[str, str] | None:
                with psycopg.connect(dsn) as conn:
                    row = conn.execute(
                        "SELECT job_id::text, claimed_by FROM docingest.upload_jobs"
                        " WHERE status = 'embedding_in_progress' AND (progress->>'embeds_done')::int > 0"
                        " AND claimed_by IS NOT NULL LIMIT 1"
                    ).fetchone()
                return (row[0], row[1]) if row else None

            victim_job, owner = _wait(embedding_job, 90, "no job reached embedding_in_progress")
            victim_pid = int(owner.split(":")[1])
            os.kill(victim_pid, signal.SIGKILL)

            def all_terminal() -> list[dict[str, object]] | None:
                bodies = [client.get(f"/v1/jobs/{j}").json() for j in job_ids]
                return bodies if all(b["status"] in TERMINAL for b in bodies) else None

            bodies = _wait(all_terminal, 120, "jobs did not finish after the worker was killed")
        assert [b["status"] for b in bodies] == ["complete"] * len(job_ids)
        with psycopg.connect(dsn) as conn:
            for b in bodies:
                n, distinct_ids, distinct_ords = conn.execute(
                    "SELECT count(*), count(DISTINCT chunk_id), count(DISTINCT chunk_ord)"
                    " FROM docingest.document_chunks WHERE document_id = %s",
                    (b["document_id"],),
                ).fetchone()  # type: ignore[misc]
                progress = b["progress"]
                assert isinstance(progress, dict)
                assert (
                    n
                    == distinct_ids
                    == distinct_ords
                    == progress["chunks_total"]
                    == progress["embeds_done"]
                    > 0
                )
            took_over = conn.execute(
                "SELECT attempt, claimed_by FROM docingest.upload_jobs WHERE job_id = %s",
                (victim_job,),
            ).fetchone()
            assert took_over is not None and took_over[0] >= 2  # claimed again after the kill
            buffers = conn.execute(
                "SELECT (SELECT count(*) FROM docingest.document_chunk_buffer)"
                " + (SELECT count(*) FROM docingest.document_vector_buffer)"
            ).fetchone()
            assert buffers == (0,)
        stats = httpx.get(f"{fake_openai}/stats").json()
        total_chunks = sum(int(b["progress"]["chunks_total"]) for b in bodies)  # type: ignore[index]
        # Paid for twice: at most what the killed worker had sent and not committed. The
        # provider bills what it received, whether or not the worker was there to read the
        # answer: its requests in flight (at most MAX_IN_FLIGHT), and those answered whose
        # jobs were still storing them (a request slot frees at the answer, so at most
        # MAX_IN_FLIGHT more unless storing takes longer than a request: 24 inputs, three
        # requests of 8, were seen once in a parallel `make test`).
        assert total_chunks <= stats["inputs"] <= total_chunks + 2 * MAX_IN_FLIGHT * 8
    finally:
        stop_process(up, grace_s=30, kill_group=True)
    assert up.returncode is not None
