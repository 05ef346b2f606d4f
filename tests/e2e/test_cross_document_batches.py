"""Micro-batches across documents (issue 12): a worker fills each request from every
embedding job it holds, so many small documents cost ceil(new texts / 256) requests plus at
most one partial request per worker; each job still commits its own progress, and a poison
text fails only its own document even when it shared requests with others."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from docingest.testing.procs import run_process, wait_for
from docingest.worker.runner import run_worker
from tests.e2e.conftest import MakeRuntime, openai_env, stack_env
from tests.e2e.test_embedding_spend import (
    POISON,
    all_terminal,
    control,
    document,
    job_states,
    place,
    rows,
    stats,
)

DOCS, SECTIONS = 30, 20  # 600 distinct texts in documents far smaller than one request


def _documents(first_topic: int, poison_doc: int | None = None) -> list[str]:
    out = []
    for d in range(DOCS):
        topics = range(first_topic + d * SECTIONS, first_topic + (d + 1) * SECTIONS)
        poison = topics[7] if d == poison_doc else None
        out.append(document(*topics, poison_at=poison))
    return out


async def test_one_worker_fills_requests_from_many_small_documents(
    dsn: str, fake_openai: str, openai_rt: MakeRuntime
) -> None:
    control(fake_openai, poison_substring=POISON)
    rt = openai_rt()
    job_ids = await place(rt, *_documents(1000, poison_doc=11))
    await run_worker(rt, concurrency=2, once=True, handle_signals=False)
    states = job_states(dsn, job_ids)
    assert [states[j][0] for j in job_ids] == [
        "failed_embedding" if i == 11 else "complete" for i in range(DOCS)
    ]
    failed = states[job_ids[11]]
    assert failed[2]["code"] == "embedding_input_rejected" and "ord 7" in failed[2]["message"]
    s = stats(fake_openai)
    texts = DOCS * SECTIONS
    assert s["inputs"] == texts - 1  # every text once; the refused one is never billed
    # the refused text costs the bisection of the one request that carried it
    bisection = 2 * math.ceil(math.log2(256))
    answered = s["status_counts"]["200"]
    assert answered <= math.ceil(texts / 256) + 1 + bisection
    requests_without_poison = answered - s["status_counts"]["400"]
    assert requests_without_poison <= math.ceil(texts / 256) + 1
    # every job committed its own progress and events; requests carried several documents
    for j in job_ids:
        progress = states[j][3]
        assert progress["embeds_done"] == (SECTIONS - 1 if j == job_ids[11] else SECTIONS)
    per_request = rows(
        dsn,
        "SELECT detail->>'batch_id', count(DISTINCT job_id) FROM docingest.events"
        " WHERE action = 'embedding.batch' GROUP BY 1",
    )
    assert max(n for _, n in per_request) >= 256 // SECTIONS


async def test_two_worker_processes_stay_within_ceil_plus_workers(
    dsn: str, fake_openai: str, openai_rt: MakeRuntime, tmp_path: Path
) -> None:
    rt = openai_rt()
    job_ids = await place(rt, *_documents(5000))
    env = stack_env(dsn, rt.settings.home, **openai_env(fake_openai))
    args = [sys.executable, "-m", "docingest", "worker", "--concurrency", "2"]
    with run_process(args, env=env), run_process(args, env=env):
        wait_for(lambda: all_terminal(dsn, job_ids), 120, "every job terminal")
    states = job_states(dsn, job_ids)
    assert {states[j][0] for j in job_ids} == {"complete"}
    s = stats(fake_openai)
    assert s["inputs"] == DOCS * SECTIONS
    assert s["status_counts"]["200"] <= math.ceil(DOCS * SECTIONS / 256) + 2
