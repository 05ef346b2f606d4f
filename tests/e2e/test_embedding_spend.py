"""The production embedding path against the fake OpenAI server (a real process, real HTTP)
and a real Postgres: each distinct text paid for once, a poison input costing only its own
document, an exhausted quota making jobs wait (not fail), an outage absorbed by the shared
circuit breaker, and a 429 storm across four `docingest worker` processes that never pushes
the traffic over the configured RPM/TPM."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from docingest.bootstrap import Runtime
from docingest.domain.states import TERMINAL
from docingest.store import jobs
from docingest.store.db import open_pool
from docingest.testing.procs import run_process, wait_for
from docingest.testing.seed import place_parsed
from docingest.worker.runner import run_worker
from tests.e2e.conftest import MakeRuntime, openai_env, stack_env
from tests.helpers import make_runtime

POISON = "ZQXPOISONQZX"


def section(i: int, marker: str = "") -> str:
    """One heading + ~100 tokens: the chunker makes it one chunk; the same `i` is the same text."""
    rng = random.Random(i)
    words = " ".join(f"term{rng.randrange(10_000)}" for _ in range(40))
    return f"# Topic {i}\n\n{words} {marker}.\n"


def document(*ids: int, poison_at: int | None = None) -> str:
    return "\n".join(section(i, POISON if i == poison_at else "") for i in ids)


def control(fake: str, **faults: object) -> None:
    httpx.post(f"{fake}/control", json=faults).raise_for_status()


def stats(fake: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{fake}/stats").json()
    return body


async def place(rt: Runtime, *docs: str) -> list[uuid.UUID]:
    pool = await open_pool(rt.dsn)
    try:
        async with pool.connection() as conn:
            user = uuid.uuid4()
            return [(await place_parsed(conn, rt.blobs, user, md)).job_id for md in docs]
    finally:
        await pool.close()


def rows(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def job_states(dsn: str, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, ...]]:
    found = rows(
        dsn,
        "SELECT job_id, status::text, retry_count, last_error, progress"
        " FROM docingest.upload_jobs WHERE job_id = ANY(%s)",
        job_ids,
    )
    return {r[0]: r[1:] for r in found}


def all_terminal(dsn: str, job_ids: list[uuid.UUID]) -> bool:
    return all(s[0] in TERMINAL for s in job_states(dsn, job_ids).values())


async def work_until(rt: Runtime, done: Callable[[], bool], timeout_s: float) -> None:
    async def until() -> bool:
        return done()

    await asyncio.wait_for(
        run_worker(rt, concurrency=2, until=until, handle_signals=False, poll_interval_s=0.2),
        timeout_s,
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.contextmanager
def workers(n: int, env: dict[str, str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for _ in range(n):
            args = [sys.executable, "-m", "docingest", "worker", "--concurrency", "2"]
            stack.enter_context(run_process(args, env=env))
        yield


# --------------------------------------------------------------------------- no waste


async def test_each_distinct_text_is_embedded_once_across_and_within_documents(
    dsn: str, fake_openai: str, openai_rt: MakeRuntime
) -> None:
    rt = openai_rt(DOCINGEST_EMBED_BATCH_SIZE="4")
    job_ids = await place(
        rt,
        document(*range(10)),
        document(0, 1, 2, 3, 4, 10, 11, 12, 13, 14),  # half shared with the first document
        document(20, 21, 20, 21, 22, 23, 24, 22, 20),  # repeats in one window and across windows
    )
    # one slot, but a document that reaches embedding leaves it: the three embed together and
    # share requests (4 inputs each here); a text queued by one is answered to the others
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    states = job_states(dsn, job_ids)
    assert [states[j][0] for j in job_ids] == ["complete"] * 3
    distinct = rows(
        dsn, "SELECT count(DISTINCT chunk_sha), count(*) FROM docingest.document_chunks"
    )
    [(n_distinct, n_chunks)] = distinct
    assert (n_distinct, n_chunks) == (10 + 5 + 5, 10 + 10 + 9)
    s = stats(fake_openai)
    assert s["inputs"] == n_distinct  # the provider saw each distinct text exactly once
    # the same text has the same vector wherever it occurs
    assert (
        rows(
            dsn,
            "SELECT chunk_sha FROM docingest.document_chunks GROUP BY chunk_sha"
            " HAVING count(DISTINCT vector_sha) > 1",
        )
        == []
    )
    progress = [states[j][3] for j in job_ids]
    # not paid for: 5 texts of the second document (the first paid, stored or still in
    # flight); topic 20 in the third document's last window (its other repeats were fanned
    # out within their window, in one request)
    assert [p["embeds_reused"] for p in progress] == [0, 5, 1]
    assert sum(p["embed_tokens"] for p in progress) == s["tokens"] > 0
    # requests carry several documents' texts: full ones only, ceil(20 texts / 4)
    assert s["status_counts"]["200"] == 5
    assert all(p["embed_requests"] >= 1 for p in progress)
    for p in progress:  # text-embedding-3-small at $0.02 per million tokens
        assert abs(p["embed_cost_usd"] - p["embed_tokens"] * 0.02 / 1e6) < 1e-8
    batches = rows(
        dsn,
        "SELECT sum((detail->>'tokens')::int), count(DISTINCT detail->>'batch_id')"
        " FROM docingest.events WHERE action = 'embedding.batch'",
    )
    assert batches == [(s["tokens"], s["status_counts"]["200"])]

    # a second ingest of the same texts as new documents costs nothing
    again = await place(rt, document(*range(10)), document(20, 21, 22))
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    assert [job_states(dsn, again)[j][0] for j in again] == ["complete"] * 2
    assert stats(fake_openai)["requests"] == s["requests"]


# --------------------------------------------------------------------------- poison


async def test_a_poison_input_fails_only_its_document_and_a_retry_pays_only_for_it(
    dsn: str, fake_openai: str, openai_rt: MakeRuntime
) -> None:
    control(fake_openai, poison_substring=POISON)
    rt = openai_rt()
    poisoned, healthy = await place(
        rt, document(*range(100, 140), poison_at=117), document(*range(200, 230))
    )
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    states = job_states(dsn, [poisoned, healthy])
    assert states[healthy][0] == "complete"
    status, _, last_error, progress = states[poisoned]
    assert status == "failed_embedding"
    assert last_error["code"] == "embedding_input_rejected"
    assert "ord 17" in last_error["message"] and POISON not in last_error["message"]
    # everything else of the poisoned document was embedded and kept
    [(kept,)] = rows(
        dsn,
        "SELECT count(*) FROM docingest.document_vector_buffer WHERE document_id ="
        " (SELECT document_id FROM docingest.upload_jobs WHERE job_id = %s)",
        poisoned,
    )
    assert kept == progress["chunks_total"] - 1 == 39
    s = stats(fake_openai)
    assert s["inputs"] == 39 + 30
    assert 1 <= s["status_counts"]["400"] <= 2 * 6 + 1  # found by halving, not one by one

    control(fake_openai, poison_substring=None)  # the cause is fixed; the user retries
    pool = await open_pool(dsn)
    async with pool.connection() as conn:
        assert await jobs.retry_failed(conn, poisoned, jobs.StatusEvent(actor="test")) is not None
    await pool.close()
    await run_worker(rt, concurrency=1, once=True, handle_signals=False)
    assert job_states(dsn, [poisoned])[poisoned][0] == "complete"
    assert stats(fake_openai)["inputs"] == s["inputs"] + 1


# --------------------------------------------------------------------------- quota


async def test_exhausted_quota_makes_jobs_wait_then_they_complete(
    dsn: str, fake_openai: str, openai_rt: MakeRuntime
) -> None:
    control(fake_openai, quota_exhausted=True)
    rt = openai_rt(DOCINGEST_EMBED_QUOTA_COOLDOWN_SECONDS="3")
    job_ids = await place(rt, document(*range(300, 310)), document(*range(310, 320)))
    alerts_before = metric(
        "docingest_embedding_quota_exhausted_total", model="text-embedding-3-small"
    )
    await run_worker(rt, concurrency=2, once=True, handle_signals=False)
    states = job_states(dsn, job_ids)
    assert [s[0] for s in states.values()] == ["embedding_in_progress"] * 2  # waiting
    assert [s[1] for s in states.values()] == [0, 0]  # no retry spent
    [(state, reason)] = rows(
        dsn, "SELECT state, reason FROM docingest.circuit_breakers WHERE service = 'embedder'"
    )
    assert (state, reason) == ("open", "quota_exhausted")
    assert rows(
        dsn,
        "SELECT action, outcome, detail->>'reason' FROM docingest.events"
        " WHERE action LIKE 'circuit.%%'",
    ) == [("circuit.open", "alert", "quota_exhausted")]
    assert (
        metric("docingest_embedding_quota_exhausted_total", model="text-embedding-3-small")
        > alerts_before
    )
    assert stats(fake_openai)["requests"] <= 2  # spending stopped at the first refusal

    control(fake_openai, quota_exhausted=False)  # credit added
    await work_until(rt, lambda: all_terminal(dsn, job_ids), timeout_s=60)
    assert [s[0] for s in job_states(dsn, job_ids).values()] == ["complete"] * 2
    [(state,)] = rows(dsn, "SELECT state FROM docingest.circuit_breakers")
    assert state == "closed"


# --------------------------------------------------------------------------- outage


def test_embedder_outage_opens_the_circuit_and_nothing_fails(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    """A 12 s outage, longer than the whole retry budget (2 retries: ~3 s + ~6 s of
    backoff), so without the shared breaker these jobs would end in failed_embedding."""
    home = tmp_path / "home"
    extra = openai_env(
        fake_openai,
        DOCINGEST_EMBED_BATCH_SIZE="4",
        DOCINGEST_MAX_RETRIES="2",
        DOCINGEST_CIRCUIT_FAILURES="3",
        DOCINGEST_CIRCUIT_COOLDOWN_SECONDS="2",
    )
    rt = make_runtime(dsn, home, **extra)  # creates the shared key files before the workers
    control(fake_openai, latency_ms=60)
    job_ids = asyncio.run(place(rt, *(document(*range(k * 40, k * 40 + 40)) for k in range(4))))

    def progressed() -> bool:
        return any(s[3]["embeds_done"] > 0 for s in job_states(dsn, job_ids).values())

    def circuit_open() -> bool:
        return rows(dsn, "SELECT 1 FROM docingest.circuit_breakers WHERE state = 'open'") != []

    with workers(2, stack_env(dsn, home, **extra)):
        wait_for(progressed, 60, "no embedding progress before the outage")
        control(fake_openai, fail_500_next=1_000_000)
        wait_for(circuit_open, 30, "the circuit did not open")
        time.sleep(12)  # the outage itself: a duration, not a synchronisation
        failures_during = stats(fake_openai)["status_counts"].get("500", 0)
        control(fake_openai, fail_500_next=0)
        wait_for(lambda: all_terminal(dsn, job_ids), 90, "jobs did not finish after the outage")
    states = job_states(dsn, job_ids)
    assert [s[0] for s in states.values()] == ["complete"] * 4
    # the breaker let through only a few requests while the service was down
    assert 3 <= failures_during <= 20
    actions = [
        a
        for (a,) in rows(
            dsn,
            "SELECT action FROM docingest.events WHERE action LIKE 'circuit.%%' ORDER BY event_id",
        )
    ]
    assert actions[0] == "circuit.open" and actions[-1] == "circuit.closed"
    assert "circuit.half_open" in actions


# --------------------------------------------------------------------------- 429 storm


@pytest.mark.slow
def test_429_storm_with_four_workers_never_exceeds_the_shared_rpm_tpm(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    """Four worker processes share RPM 12 / TPM 100,000 through Postgres. The fake enforces
    the same limits itself and injects a storm of 429s; its sliding-window statistics
    confirm no 60 s window ever carried more than the limits, and nothing failed."""
    rpm, tpm = 12, 100_000
    home = tmp_path / "home"
    extra = openai_env(
        fake_openai,
        DOCINGEST_EMBED_BATCH_SIZE="4",
        DOCINGEST_EMBED_RPM=str(rpm),
        DOCINGEST_EMBED_TPM=str(tpm),
    )
    rt = make_runtime(dsn, home, **extra)
    control(fake_openai, rpm=rpm, tpm=tpm, fail_429_next=6, retry_after_ms=300)
    # 5 documents x 12 chunks in windows of 4: 15 requests + 6 throttled attempts, each one
    # reserved: 12 in the first minute, the other 9 one window later
    job_ids = asyncio.run(place(rt, *(document(*range(k * 12, k * 12 + 12)) for k in range(5))))
    started = time.monotonic()
    with workers(4, stack_env(dsn, home, **extra)):
        wait_for(lambda: all_terminal(dsn, job_ids), 150, "jobs did not finish")
    elapsed = time.monotonic() - started
    states = job_states(dsn, job_ids)
    assert [s[0] for s in states.values()] == ["complete"] * 5
    s = stats(fake_openai)
    assert s["status_counts"]["429"] == 6 and s["rate_limit_denials"] == 0
    assert s["status_counts"]["200"] == 15
    assert s["requests"] > rpm and elapsed > 60  # the limit was binding: it had to wait
    assert s["max_requests_per_window"] <= rpm
    assert s["max_tokens_per_window"] <= tpm
