"""Throughput as worker processes are added (each at the default concurrency), two ways:

- I/O-bound: the remote parser (1-3 s per job) and a ~500 ms embedder with jitter (uniform
  250-750 ms), as with LlamaParse and OpenAI in production, at 1, 2, 4 and 8 workers;
- CPU-bound: the local parser (PDF -> markdown in the worker) and a 50 ms embedder, at 1
  and 2 workers on the cores this machine has.

Efficiency is throughput(n) / ideal(n). Every point also records the CPU time the whole
stack spent per document (API, workers, PostgreSQL, both fakes and this driver) and how
many cores everything else on the machine kept busy meanwhile, hence `cpu_cap`: the
documents per minute the CPU left to the stack could sustain at that cost.

- I/O-bound: ideal(n) = n x throughput(1), linear, as DESIGN.md §9 expects while external
  latency dominates; judged at 8 workers. Efficiency against min(linear, cpu_cap) is
  reported beside it: it says whether anything but the CPU (pool sizes, claim contention,
  locks) holds the workers back.
- CPU-bound: ideal(n) = min(n x throughput(1), cpu_cap(n)): no number of workers goes
  beyond the cores; judged at 2 workers.

Throughput: n warm workers (registered and listening) get n x k documents, generated
before the clock starts and uploaded by 4 concurrent clients; documents per minute from the
first upload to the last completion. Each point is measured `plan.scaling_runs` times (fresh
workers and documents each time) and its median run is the one judged; every run's figure
is in `runs_docs_per_min` (single runs of the 8-worker point took 4.7 to 5.5 s on the same
quiet machine and code). No part of the run is left out: a "steady state"
window after the first wave is meaningless here, because the cross-document embedding
batcher finishes many documents in one burst (such a window once gave efficiencies of 1.5
to 5.6, above what the CPU allowed).
"""

from __future__ import annotations

import time
from typing import Any

from docingest.ops.validation import cpu
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.stack import FakeLatencies, Stack
from docingest.ops.validation.traffic import new_documents, upload_all
from docingest.worker.runner import DEFAULT_CONCURRENCY

IO_EMBED_MS, IO_EMBED_JITTER_MS = 250.0, 500.0
CPU_EMBED_MS = 50.0
CPU_PAGES = 20
MIN_CORES = 0.1  # a cap is never computed from less CPU than this


def run(stack: Stack, plan: Plan) -> dict[str, Any]:
    stack.reset_latencies()
    stack.openai_control(latency_ms=IO_EMBED_MS, latency_jitter_ms=IO_EMBED_JITTER_MS)
    io_fakes = FakeLatencies(IO_EMBED_MS, IO_EMBED_JITTER_MS, stack.latencies.parse_ms,
                             stack.latencies.parse_jitter_ms)  # fmt: skip
    workers = plan.scaling_workers
    io_bound = _series(stack, workers, plan.scaling_docs_per_worker, plan.scaling_runs, pages=2)
    linear = [n * io_bound["docs_per_min"][0] for n in workers]
    io_bound["efficiency"] = _efficiency(io_bound["docs_per_min"], linear)
    io_bound["what_remains"] = what_remains(io_bound)
    io_bound["efficiency_vs_cpu_cap"] = _efficiency(
        io_bound["docs_per_min"],
        [min(a, b) for a, b in zip(linear, io_bound["cpu_cap"], strict=True)],
    )
    io_bound["settings"] = {
        **stack.describe_settings(),
        "fakes": io_fakes.describe(),
        "documents": "generated, 2 pages",
    }

    stack.openai_control(latency_ms=CPU_EMBED_MS, latency_jitter_ms=0)
    cpu_workers = plan.cpu_scaling_workers
    cpu_bound = _series(
        stack, cpu_workers, plan.scaling_docs_per_worker, plan.scaling_runs, pages=CPU_PAGES,
        env={"DOCINGEST_PARSER": "local"},
    )  # fmt: skip
    ideal = [
        min(n * cpu_bound["docs_per_min"][0], cap)
        for n, cap in zip(cpu_workers, cpu_bound["cpu_cap"], strict=True)
    ]
    cpu_bound["ideal_docs_per_min"] = [round(x, 2) for x in ideal]
    cpu_bound["efficiency"] = _efficiency(cpu_bound["docs_per_min"], ideal)
    cpu_bound["settings"] = {
        **stack.describe_settings(),
        "parser": "local",
        "fakes": f"embedder {CPU_EMBED_MS:.0f} ms",
        "documents": f"generated, {CPU_PAGES} pages",
    }
    stack.restart_workers(2)  # back to the stack's own settings for what follows
    stack.reset_latencies()
    return {"scaling": {"io_bound": io_bound, "cpu_bound": cpu_bound}}


def _efficiency(per_min: list[float], ideal: list[float]) -> list[float]:
    return [round(tp / best, 3) for tp, best in zip(per_min, ideal, strict=True)]


def _series(
    stack: Stack,
    workers: tuple[int, ...],
    docs_per_worker: int,
    runs: int,
    *,
    pages: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    points = [
        sorted(
            (_run(stack, n, docs_per_worker, pages, env) for _ in range(runs)),
            key=lambda p: p["docs_per_min"],
        )
        for n in workers
    ]
    median = [runs_of_n[len(runs_of_n) // 2] for runs_of_n in points]
    return {
        "workers": list(workers),
        "slots_per_worker": DEFAULT_CONCURRENCY,
        "docs_per_worker": docs_per_worker,
        "runs": runs,
        "runs_docs_per_min": [[p["docs_per_min"] for p in runs_of_n] for runs_of_n in points],
        **{key: [p[key] for p in median] for key in _POINT_KEYS},
        "cores": median[-1]["cores"],
    }


_POINT_KEYS = (
    "docs_per_min",
    "seconds",
    "uploads_s",
    "last_document",
    "stack_cpu_ms_per_doc",
    "other_load_cores",
    "cpu_cap",
)


def _run(
    stack: Stack, n: int, docs_per_worker: int, pages: int, env: dict[str, str] | None
) -> dict[str, Any]:
    """One measurement of `n` fresh workers on `n x docs_per_worker` new documents."""
    stack.restart_workers(n, **(env or {}))
    documents = new_documents(n * docs_per_worker, pages=pages)
    started, t0 = time.time(), time.monotonic()
    before = cpu.sample(stack.cpu_pids())
    job_ids = upload_all(stack, documents)
    rows = stack.wait_terminal(job_ids, 900)
    use = cpu.CpuUse.between(before, cpu.sample(stack.cpu_pids()), time.monotonic() - t0)
    if any(r["status"] != "complete" for r in rows):
        raise RuntimeError(f"a job did not complete with {n} workers")
    elapsed = max(float(r["updated"]) for r in rows) - started
    return {
        "docs_per_min": round(60 * len(rows) / elapsed, 2),
        "seconds": round(elapsed, 2),
        "uploads_s": round(max(float(r["created"]) for r in rows) - started, 3),
        "last_document": _last_document(stack, rows, started),
        "stack_cpu_ms_per_doc": round(1000 * use.stack_s / len(rows), 1),
        "other_load_cores": round(use.others_cores, 2),
        "cpu_cap": round(
            60 * max(use.cores - use.others_cores, MIN_CORES) * len(rows) / use.stack_s, 1
        ),
        "cores": use.cores,
    }


def _last_document(stack: Stack, rows: list[dict[str, Any]], started: float) -> dict[str, float]:
    """Where the run's time went, on the document that completed last (its completion is the
    run's end): when it was created after the first upload, its parser's own seconds (the
    fake's measure; 0 with the local parser, whose work is docingest's), the time it waited
    on its embedding calls, and the rest, docingest's own. The four add up to the run's
    seconds."""
    last = max(rows, key=lambda r: float(r["updated"]))
    [job] = stack.query(
        "SELECT progress, parse_external_id FROM docingest.upload_jobs WHERE job_id = %s::uuid",
        (last["job_id"],),
    )
    parser_s = float(
        stack.llamaparse_stats()["job_seconds"].get(str(job["parse_external_id"]), 0.0)
    )
    embedder_s = float((job["progress"] or {}).get("embed_provider_s", 0.0))
    seconds = float(last["updated"]) - float(last["created"])
    return {
        "created_s": round(float(last["created"]) - started, 3),
        "parser_s": round(parser_s, 3),
        "embedder_s": round(embedder_s, 3),
        "ours_s": round(seconds - parser_s - embedder_s, 3),
    }


def what_remains(series: dict[str, Any]) -> dict[str, Any]:
    """Between the first point and the judged one, how the run's seconds grew, part by part
    of the document that completed last (`_last_document`): efficiency is the first point's
    seconds over the judged point's, since each worker gets the same documents. Also what
    the efficiency would have been had that document's providers' draws been the only
    difference (with more documents, the slowest of more jittered latencies): a rough
    ceiling on what docingest alone can change, from one document.

    And how close linear scaling came to what the machine's cores allowed at the judged
    point (`cpu_cap`: the cores less what other processes used, over the stack's CPU per
    document): at or near 1, every step of every document queues for a core, and only less
    CPU per document moves the point."""
    first, judged = series["last_document"][0], series["last_document"][-1]
    gap = {part: round(judged[part] - first[part], 3) for part in first}
    t_first, t_judged = series["seconds"][0], series["seconds"][-1]
    providers = gap["parser_s"] + gap["embedder_s"]
    linear = series["docs_per_min"][0] * series["workers"][-1] / series["workers"][0]
    cap = series["cpu_cap"][-1]
    return {
        "seconds": [t_first, t_judged],
        "gap_s": round(t_judged - t_first, 3),
        "gap_by_part_s": gap,
        "uploads_s": [series["uploads_s"][0], series["uploads_s"][-1]],
        "efficiency_if_only_providers_differed": round(t_first / (t_first + providers), 3),
        "stack_cpu_ms_per_doc": [
            series["stack_cpu_ms_per_doc"][0],
            series["stack_cpu_ms_per_doc"][-1],
        ],
        "linear_docs_per_min": round(linear, 2),
        "cpu_cap_docs_per_min": cap,
        "linear_share_of_cpu_cap": round(linear / cap, 3),
    }
