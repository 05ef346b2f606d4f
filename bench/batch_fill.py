"""Embedding batch fill at validate's reliability workload, measured and then modelled.

Runs the shape of `docingest validate`'s reliability phase without its faults: a fresh
validate stack at production defaults with 4 workers, the fakes at validate's latencies
(embedder 300-800 ms, LlamaParse 1-3 s), the corpus files the full plan pushes uploaded one
by one, then the plan's generated documents by 4 clients. It prints what happened (embedding
requests, inputs, batch fill = inputs / (requests x 256)) and, per request, when it was
stored, by which worker and for how many jobs.

Then it replays the measured arrivals (each job's chunks, at the moment its embedding
started) through a model of one request queue shared by all workers, two ways, with
provider latencies drawn from the same 300-800 ms over 20 seeds:
- eager: whatever is queued goes as soon as one of 8 request slots is free;
- Nagle: a full request goes at once (8 in flight), a partial one only when no request is
  in flight.
For each: requests, batch fill, and the median and max seconds from a job's arrival to its
last answer. A model, not the system (docingest's own rule, a worker holding a partial
request while its own parsing or chunking may add to it, is not modelled): compare the two
model lines with each other, and the measured line with the target. It says what a
cross-worker queue could reach on these arrivals and what it would cost in latency.

Rerun: `.venv/bin/python bench/batch_fill.py [--seeds 20]`.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import CORPUS
from docingest.ops.validation.plan import FULL
from docingest.ops.validation.reliability import corpus_files
from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import upload, upload_generated

WORKERS = 4
BATCH = 256
LATENCY_S = (0.3, 0.8)  # validate's embedder outside the scaling phase


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the first upload
    job: str
    texts: int


def measure() -> list[Arrival]:
    with (
        tempfile.TemporaryDirectory(prefix="docingest-batch-fill-") as root,
        Stack(Path(root)) as stack,
    ):
        stack.start(workers=WORKERS)
        stack.reset_latencies()
        stack.wait_workers_ready(WORKERS, 90)
        stack.openai_stats(reset=True)
        files = corpus_files(CORPUS, FULL)
        started = time.time()
        with stack.client() as client:
            ups = [upload(client, f.name, f.path.read_bytes()) for f in files]
            ups += upload_generated(client, range(1_000, 1_000 + FULL.generated_docs))
        job_ids = [u.job_id for u in ups if u.job_id]
        stack.wait_terminal(job_ids, 900)
        stats = stack.openai_stats()
        batches = stack.query(
            "SELECT detail->>'batch_id' AS batch, min(actor) AS actor,"
            " sum((detail->>'inputs')::int) AS inputs, count(*) AS jobs,"
            " extract(epoch FROM min(at))::float8 AS at FROM docingest.events"
            " WHERE action = 'embedding.batch' AND job_id = ANY(%s::uuid[])"
            " GROUP BY 1 ORDER BY 5",
            (job_ids,),
        )
        arrivals = stack.query(
            "SELECT j.job_id::text AS job, (j.progress->>'chunks_total')::int AS texts,"
            " extract(epoch FROM s.at)::float8 AS at"
            " FROM docingest.upload_jobs j JOIN LATERAL (SELECT min(at) AS at"
            "   FROM docingest.events e WHERE e.job_id = j.job_id"
            "   AND e.action = 'job.embedding_in_progress') s ON s.at IS NOT NULL"
            " WHERE j.job_id = ANY(%s::uuid[])",
            (job_ids,),
        )
    inputs = sum(int(b["inputs"]) for b in batches)
    print(
        f"measured: {len(job_ids)} documents, 4 workers, production defaults, fakes embedder"
        f" 300-800 ms and LlamaParse 1-3 s; {stats['requests']} embedding requests"
        f" ({len(batches)} stored), {inputs} inputs, batch fill"
        f" {inputs / (BATCH * max(len(batches), 1)):.2f}"
    )
    print("  stored at (s)  worker    inputs  jobs")
    for b in batches:
        print(f"  {b['at'] - started:12.2f}  {b['actor'][-8:]}  {b['inputs']:6d}  {b['jobs']:4d}")
    return sorted(
        (
            Arrival(float(a["at"]) - started, a["job"], int(a["texts"]))
            for a in arrivals
            if a["texts"]
        ),
        key=lambda a: a.at,
    )


@dataclass(frozen=True)
class Policy:
    name: str
    in_flight: int  # requests in flight at once
    nagle: bool  # a partial request only when none is in flight


def simulate(arrivals: list[Arrival], policy: Policy, seed: int) -> tuple[list[int], list[float]]:
    """(inputs per request, seconds from each job's arrival to its last answer)."""
    rng = random.Random(seed)
    queue: list[list[Any]] = []  # [job, texts not yet sent], oldest first
    flying = 0
    answers: list[tuple[float, int, list[tuple[str, int]]]] = []
    sizes: list[int] = []
    done: dict[str, float] = {}
    pending = list(arrivals)
    now, tick = 0.0, 0
    while pending or answers or queue:
        now = min([*(a.at for a in pending[:1]), *(x[0] for x in answers[:1])], default=now)
        while pending and pending[0].at <= now:
            a = pending.pop(0)
            queue.append([a.job, a.texts])
        while answers and answers[0][0] <= now:
            at, _, parts = heapq.heappop(answers)
            flying -= 1
            for job, _n in parts:
                done[job] = max(done.get(job, 0.0), at)
        while queue and flying < policy.in_flight:
            if sum(n for _, n in queue) < BATCH and policy.nagle and flying:
                break
            room, parts = BATCH, []
            while room and queue:
                job, n = queue[0]
                take = min(n, room)
                parts.append((job, take))
                room -= take
                if take == n:
                    queue.pop(0)
                else:
                    queue[0][1] -= take
            sizes.append(BATCH - room)
            flying += 1
            tick += 1
            heapq.heappush(answers, (now + rng.uniform(*LATENCY_S), tick, parts))
    return sizes, [done[a.job] - a.at for a in arrivals]


POLICIES = (
    Policy("one queue, eager, 8 in flight", 8, False),
    Policy("one queue, Nagle, 8 in flight", 8, True),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    arrivals = measure()
    print(
        f"model, on the measured arrivals ({len(arrivals)} jobs, {sum(a.texts for a in arrivals)}"
        f" texts), provider latency uniform {LATENCY_S[0]}-{LATENCY_S[1]} s,"
        f" {args.seeds} seeds (means):"
    )
    for policy in POLICIES:
        runs = [simulate(arrivals, policy, seed) for seed in range(args.seeds)]
        requests = statistics.fmean(len(sizes) for sizes, _ in runs)
        fill = statistics.fmean(sum(s) / (BATCH * len(s)) for s, _ in runs)
        median = statistics.fmean(statistics.median(lat) for _, lat in runs)
        worst = statistics.fmean(max(lat) for _, lat in runs)
        print(
            f"  {policy.name:55s} requests {requests:5.1f}  fill {fill:.2f}"
            f"  job arrival -> last answer: median {median:.2f} s, max {worst:.2f} s"
        )


if __name__ == "__main__":
    main()
