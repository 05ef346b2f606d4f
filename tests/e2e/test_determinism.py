"""Idempotency and determinism as processes see them (issue 4, item 4).

One document, one user, the real API and `docingest worker` processes against the fake
OpenAI endpoint. Processed again and again: by a re-upload, by a retry after a permanent
embedding failure, by an admin advance after its worker was SIGKILLed mid-embedding, and
after a worker died holding it at each non-terminal status in turn. Every time: the same
chunk ids, chunk hashes and vector hashes, and no finished work paid for twice (embedding
inputs billed by the fake, one commit per status)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import psycopg
import pytest

from docingest.bootstrap import parser
from docingest.domain.states import JobStatus
from docingest.security.bearer_tokens import mint_token
from docingest.store import jobs
from docingest.store.chunks import ChunkFingerprint, fingerprint
from docingest.store.db import open_pool
from docingest.testing.procs import free_port, run_process, stop_process, wait_for
from docingest.worker.context import StageContext
from docingest.worker.embed_batcher import MAX_IN_FLIGHT
from docingest.worker.stages import STAGES
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, stack_env
from tests.helpers import claim_one, make_runtime

PDF = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
BATCH = 4
T = TypeVar("T")
# Every status a job can be left in by a worker that dies, in pipeline order.
NON_TERMINAL = [s for s in JobStatus if not s.is_terminal]
# Statuses whose commit writes a `job.<status>` event, i.e. every one after `uploaded`.
COMMITTED = [s for s in JobStatus if s is not JobStatus.UPLOADED and not s.is_failed]


@dataclasses.dataclass
class Stack:
    dsn: str
    home: Path
    env: dict[str, str]
    api: httpx.Client
    openai: str
    user: UUID
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def upload(self) -> dict[str, Any]:
        r = self.api.post(
            "/v1/documents", files={"file": (PDF.name, PDF.read_bytes(), "application/pdf")}
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def delete(self, document_id: str) -> None:
        assert self.api.delete(f"/v1/documents/{document_id}").status_code == 204

    def billed_inputs(self) -> int:
        return int(httpx.get(f"{self.openai}/stats").json()["inputs"])

    def control(self, **faults: object) -> None:
        httpx.post(f"{self.openai}/control", json=faults).raise_for_status()

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A `docingest worker` process with a lease long enough that a job it dies holding
        stays stuck until someone intervenes."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "docingest", "worker", "--concurrency", "1"],
            env={**self.env, "DOCINGEST_LEASE_SECONDS": "300"},
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def wait_status(self, job_id: str, status: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] == status else None

        return wait_for(reached, 60, f"job did not reach {status}")

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(f"/v1/jobs/{job_id}").json()
        return body

    async def fingerprint(self, document_id: str) -> list[ChunkFingerprint]:
        pool = await open_pool(self.dsn, max_size=1)
        try:
            async with pool.connection() as conn:
                return await fingerprint(conn, UUID(document_id))
        finally:
            await pool.close()


@pytest.fixture
def stack(dsn: str, tmp_path: Path, fake_openai: str) -> Iterator[Stack]:
    home = tmp_path / "home"
    env = stack_env(
        dsn,
        home,
        DOCINGEST_EMBEDDER="openai",
        DOCINGEST_OPENAI_BASE_URL=f"{fake_openai}/v1",
        DOCINGEST_OPENAI_API_KEY="sk-test",
        DOCINGEST_EMBED_DIMENSIONS="256",
        DOCINGEST_EMBED_BATCH_SIZE=str(BATCH),
    )
    port = free_port()
    api_cmd = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, user)}"}
    with (
        run_process(api_cmd, env=env, ready_url=f"{base}/readyz", timeout_s=60),
        httpx.Client(base_url=base, headers=headers, timeout=30) as api,
    ):
        s = Stack(dsn, home, env, api, fake_openai, user)
        try:
            yield s
        finally:
            for proc in s.procs:
                stop_process(proc, kill_group=True)


def _status_commits(dsn: str, job_id: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT action, count(*) FROM docingest.events WHERE job_id = %s"
            " AND action = ANY(%s) GROUP BY action",
            (job_id, [f"job.{s.value}" for s in COMMITTED]),
        ).fetchall()
    return dict(rows)


async def _leave_at(stack: Stack, ctx: StageContext, stop_at: JobStatus) -> None:
    """A worker (in this process) claims the only claimable job, runs its stages up to
    `stop_at` and dies holding it: its lease is left to run out."""
    async with ctx.pool.connection() as conn:
        job = await claim_one(conn, "dead", lease_s=300)
    assert job is not None
    while job.status != stop_at:
        job = await STAGES[job.status](ctx, job)
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "UPDATE docingest.upload_jobs SET lease_expires_at = now() - interval '1 s'"
            " WHERE job_id = %s",
            (job.job_id,),
        )
        await jobs.notify(conn)


async def test_same_document_three_ways_and_from_every_status(stack: Stack) -> None:
    # 1. the reference run
    worker = stack.start_worker()
    first = stack.upload()
    stack.wait_status(first["job_id"], "complete")
    reference = await stack.fingerprint(first["document_id"])
    chunks = len(reference)
    inputs_per_run = stack.billed_inputs()
    assert chunks > 2 * BATCH and 0 < inputs_per_run <= chunks

    # 2. re-upload: the same document and job, nothing new written or billed
    again = stack.upload()
    assert again["duplicate"] is True
    assert (again["document_id"], again["job_id"]) == (first["document_id"], first["job_id"])
    assert stack.job(first["job_id"])["status"] == "complete"
    assert await stack.fingerprint(first["document_id"]) == reference
    assert stack.billed_inputs() == inputs_per_run

    # 3. retry: a permanent embedding failure part-way (the fake refuses one late chunk's
    # text), then POST retry; batches stored before the failure are not embedded again
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute(
            "SELECT text FROM docingest.document_chunks WHERE chunk_id = %s",
            (reference[-1].chunk_id,),
        ).fetchone()
    assert row is not None
    stack.control(poison_substring=row[0][:200])
    stack.delete(first["document_id"])
    billed = stack.billed_inputs()
    doc = stack.upload()
    assert doc["document_id"] == first["document_id"] and doc["duplicate"] is False
    failed = stack.wait_status(doc["job_id"], "failed_embedding")
    assert 0 < failed["progress"]["embeds_done"] < chunks
    stack.control(poison_substring=None)
    r = stack.api.post(f"/v1/jobs/{doc['job_id']}/retry")
    assert r.status_code == 202, r.text
    stack.wait_status(doc["job_id"], "complete")
    assert await stack.fingerprint(doc["document_id"]) == reference
    assert stack.billed_inputs() - billed == inputs_per_run

    # 4. admin advance: the worker embedding it is SIGKILLed and its long lease would keep
    # the job stuck; advance makes it claimable now and another worker finishes it
    stack.control(latency_ms=200)
    stack.delete(doc["document_id"])
    billed = stack.billed_inputs()
    doc = stack.upload()
    wait_for(
        lambda: stack.job(doc["job_id"])["progress"].get("embeds_done", 0) > 0,
        60,
        "the job was not embedding",
    )
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    stack.control(latency_ms=0)
    assert stack.job(doc["job_id"])["status"] == "embedding_in_progress"
    worker = stack.start_worker()
    admin = {"Authorization": f"Bearer {mint_token(JWT_SECRET, stack.user, admin=True)}"}
    r = stack.api.post(f"/jobs/{doc['document_id']}/advance", headers=admin)
    assert r.status_code == 200, r.text
    stack.wait_status(doc["job_id"], "complete")
    assert await stack.fingerprint(doc["document_id"]) == reference
    # at most the requests in flight at the kill are paid for twice (the provider bills what
    # it received, whether or not the killed worker was there to read the answer)
    paid_again = stack.billed_inputs() - billed - inputs_per_run
    assert 0 <= paid_again <= MAX_IN_FLIGHT * BATCH

    # 5. a worker dies holding the job at each non-terminal status in turn; the worker
    # process (paused meanwhile, so it cannot take the job first) resumes it, commits each
    # remaining status once and embeds only what was not stored
    rt = make_runtime(stack.dsn, stack.home, **_settings_env(stack.env))
    pool = await open_pool(stack.dsn)
    ctx = StageContext(
        pool=pool,
        blobs=rt.blobs,
        parser=parser(rt.settings),
        embedder=rt.embedder,
        worker_id="dead",
    )
    try:
        for stop_at in NON_TERMINAL:
            os.kill(worker.pid, signal.SIGSTOP)
            try:
                stack.delete(doc["document_id"])
                doc = stack.upload()
                await _leave_at(stack, ctx, stop_at)
                billed = stack.billed_inputs()
            finally:
                os.kill(worker.pid, signal.SIGCONT)
            stack.wait_status(doc["job_id"], "complete")
            assert await stack.fingerprint(doc["document_id"]) == reference, stop_at
            embedded_before = NON_TERMINAL.index(stop_at) > NON_TERMINAL.index(
                JobStatus.EMBEDDING_IN_PROGRESS
            )
            expected = 0 if embedded_before else inputs_per_run
            assert stack.billed_inputs() - billed == expected, stop_at
            assert _status_commits(stack.dsn, doc["job_id"]) == {
                f"job.{s.value}": 1 for s in COMMITTED
            }, stop_at
    finally:
        await pool.close()
        await rt.embedder.aclose()
    assert worker.poll() is None


def _settings_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("DOCINGEST_")}
