"""Recovery after each fault, at production defaults, repeated where one sample proves
little: seconds from the fault (the kill, the restart, the outage's end) until the affected
jobs complete, from job rows on the database's clock.

- worker SIGKILL, `plan.kills` times: each kill waits until the victim holds a job in an
  embedding state, and the kill counts only if the job was still there once the victim
  was dead (it cannot write any more, so its row is its state at the kill);
- PostgreSQL immediate restart, `plan.restarts` times, while workers hold jobs;
- parser and embedder outages: the outage starts before the uploads and lasts until the
  service's circuit has opened (the workers have seen it), then `plan.outage_s` more.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docingest.domain.states import TERMINAL
from docingest.ops.validation import faults
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.stack import EMBEDDING, Stack
from docingest.ops.validation.traffic import fresh_documents
from docingest.testing.procs import wait_for

JOBS_PER_SAMPLE = 3
MAX_KILL_ATTEMPTS = 5  # per sample: a kill that missed the embedding state is tried again
OUTAGE_OPEN_TIMEOUT_S = 120.0


def run(stack: Stack, plan: Plan) -> dict[str, Any]:
    stack.restart_workers(2)
    stack.reset_latencies()
    settings = {**stack.describe_settings(), "workers": 2}
    kills = _kills(stack, plan.kills)
    restarts = _restarts(stack, plan.restarts)  # after the kills: a restart pauses detection
    parser = _outage(stack, _PARSER_OUTAGE, plan.outage_s)
    embedder = _outage(stack, _EMBEDDER_OUTAGE, plan.outage_s)
    recovery = {
        "worker_kill_s": _summary(kills["samples"]),
        "postgres_restart_s": _summary(restarts["samples"]),
        "parser_outage_s": parser["seconds"],
        "embedder_outage_s": embedder["seconds"],
        "kills": kills["detail"],
        "restarts": restarts["detail"],
        "outage_hold_s": plan.outage_s,
        "settings": settings,
    }
    served = [kills["fault"], restarts["fault"], parser["fault"], embedder["fault"]]
    return {"recovery": recovery, "faults": faults.table(served)}


def _summary(samples: list[float]) -> dict[str, Any]:
    """Median and max of the samples (a failed sample is -1 and makes the max fail)."""
    if not samples:
        return {"samples": [], "n": 0, "median": None, "max": None}
    worst = -1.0 if any(s < 0 for s in samples) else max(samples)
    return {
        "samples": samples,
        "n": len(samples),
        "median": round(statistics.median(samples), 2),
        "max": worst,
    }


def _completed_after(stack: Stack, job_ids: list[str], t0: float, timeout_s: float) -> float:
    """Wait for `job_ids`; seconds from `t0` to the last completion, or -1 if any failed or
    did not finish in time."""
    try:
        rows = stack.wait_terminal(job_ids, timeout_s)
    except TimeoutError:
        return -1.0
    if any(r["status"] != "complete" for r in rows):
        return -1.0
    return round(float(max(r["updated"] for r in rows)) - t0, 2)


# --- worker kill -----------------------------------------------------------------------


def _kills(stack: Stack, n: int) -> dict[str, Any]:
    samples: list[float] = []
    detail: list[dict[str, Any]] = []
    missed = 0
    for _ in range(n):
        for _attempt in range(MAX_KILL_ATTEMPTS):
            job_ids = fresh_documents(stack, JOBS_PER_SAMPLE)
            hit = _kill_one(stack, job_ids)
            stack.wait_terminal(job_ids, 300)
            stack.wait_workers_ready(2, 90)  # the replacement is up before the next sample
            if hit is not None:
                samples.append(hit["recovered_s"])
                detail.append(hit)
                break
            missed += 1
    proven = sum(
        1 for k in detail if k["exit"] == -9 and set(k["statuses_at_kill"]) & set(EMBEDDING)
    )
    fault = faults.Fault(
        "recovery", "worker SIGKILL while holding an embedding job", n, proven,
        "exit status -9 of the reaped worker; its jobs' status after it died",
    )  # fmt: skip
    return {"samples": samples, "detail": detail, "fault": fault, "missed": missed}


def _kill_one(stack: Stack, job_ids: list[str]) -> dict[str, Any] | None:
    """Kill the worker holding one of `job_ids` in an embedding state; None if by the time
    it was dead none of its jobs was in one (the sample is retried)."""
    found = wait_for(
        lambda: next(
            (r for r in stack.jobs(job_ids) if r["status"] in EMBEDDING and r["claimed_by"]),
            None,
        ),
        120,
        "no job reached an embedding state",
    )
    holder = str(found["claimed_by"])
    pid = int(holder.split(":")[1])  # worker ids are host:pid:nonce (worker/base.py)
    if pid not in stack.worker_pids():
        return None
    age = stack.query("SELECT extract(epoch FROM now() - pg_postmaster_start_time()) AS s")
    entry = stack.kill_worker(pid)
    held = [r for r in stack.jobs(job_ids) if r["claimed_by"] == holder]
    statuses = sorted(r["status"] for r in held)
    if not set(statuses) & set(EMBEDDING):
        return None
    recovered = _completed_after(stack, [r["job_id"] for r in held], entry["killed_at"], 180)
    entry.update(
        job_ids=[r["job_id"] for r in held],
        statuses_at_kill=statuses,
        recovered_s=recovered,
        server_age_s=round(float(age[0]["s"]), 1),
    )
    return entry


# --- PostgreSQL restart ----------------------------------------------------------------


def _restarts(stack: Stack, n: int) -> dict[str, Any]:
    samples: list[float] = []
    detail: list[dict[str, Any]] = []
    for _ in range(n):
        job_ids = fresh_documents(stack, JOBS_PER_SAMPLE)
        held = wait_for(functools.partial(_held, stack, job_ids), 120, "no job was claimed")
        up_at = stack.restart_postgres()
        in_flight = [r["job_id"] for r in stack.jobs(job_ids) if r["status"] not in TERMINAL]
        recovered = _completed_after(stack, in_flight, up_at, 240) if in_flight else 0.0
        stack.wait_terminal(job_ids, 240)
        samples.append(recovered)
        detail.append(
            {**stack.restarts[-1], "held_at_restart": len(held), "in_flight": len(in_flight),
             "recovered_s": recovered}
        )  # fmt: skip
    proven = sum(1 for r in detail if r["postmaster_before"] != r["postmaster_after"])
    fault = faults.Fault(
        "recovery", "PostgreSQL immediate restart while jobs are held", n, proven,
        "postmaster pid before and after",
    )  # fmt: skip
    return {"samples": samples, "detail": detail, "fault": fault}


def _held(stack: Stack, job_ids: list[str]) -> list[dict[str, Any]]:
    return [r for r in stack.jobs(job_ids) if r["claimed_by"] and r["status"] not in TERMINAL]


# --- outages ---------------------------------------------------------------------------


def _wait_circuit_open(stack: Stack, service: str) -> bool:
    try:
        wait_for(lambda: stack.circuit_state(service) == "open", OUTAGE_OPEN_TIMEOUT_S, service)
    except TimeoutError:
        return False
    return True


def _hold(seconds: float) -> None:
    """The outage's length is the fault itself, not a synchronization wait."""
    time.sleep(seconds)


@dataclass(frozen=True)
class _Outage:
    """How to take one service down and back up, and which of its counters proves it."""

    service: str  # its circuit breaker's name
    fake: str
    down: Callable[[Stack], None]
    up: Callable[[Stack], None]
    stats: Callable[[Stack], dict[str, Any]]
    served_kind: str  # in its faults_injected
    what: str


_PARSER_OUTAGE = _Outage(
    "parser", "fake_llamaparse",
    lambda s: s.llamaparse_control(outage_until=time.time() + 24 * 3600),
    lambda s: s.llamaparse_control(outage_until=0),
    lambda s: s.llamaparse_stats(), "outage_503", "every call 503",
)  # fmt: skip
_EMBEDDER_OUTAGE = _Outage(
    "embedder", "fake_openai",
    lambda s: s.openai_control(fail_500_next=1_000_000),
    lambda s: s.openai_control(fail_500_next=0),
    lambda s: s.openai_stats(), "500", "every call 500",
)  # fmt: skip


def _outage(stack: Stack, outage: _Outage, hold_s: float) -> dict[str, Any]:
    """Down before the uploads; up again `hold_s` after the service's circuit opened;
    seconds from then until the documents complete."""
    before = outage.stats(stack)["faults_injected"]
    outage.down(stack)
    job_ids = fresh_documents(stack, JOBS_PER_SAMPLE)
    opened = _wait_circuit_open(stack, outage.service)
    _hold(hold_s)
    outage.up(stack)
    ended = time.time()
    seconds = _completed_after(stack, job_ids, ended, 300)
    served = faults.served_since(before, outage.stats(stack)["faults_injected"], outage.served_kind)
    fault = faults.Fault(
        "recovery", f"{outage.service} outage ({outage.what}) until its circuit opened, then held",
        1, int(opened and served > 0),
        f"{outage.fake} served {served} of them; circuit opened: {opened}",
    )  # fmt: skip
    return {"seconds": seconds, "fault": fault}
