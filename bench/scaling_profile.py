"""The I/O-bound scaling point of `docingest validate`, looked into: where the time and the CPU go.

On a fresh validate stack (production defaults, the same jittered fakes: embedder 250-750 ms,
LlamaParse 1-3 s with callbacks), each run restarts `n` workers, uploads `n x 10` new 2-page
documents with the validation's 4 upload clients, waits for all of them, and prints:
- how long the uploads took and when the last document was created;
- each document's own latency (created -> complete), p50 and max, and the whole run;
- CPU seconds of the run per kind of process (psutil, every process on the machine that used
  any: workers, PostgreSQL, API, fake LlamaParse and its parse pool, fake OpenAI, this script),
  for the whole run and for the time the uploads ran;
- each document's own time per stage (p50 / p90 / max, from its events, the fake parser's own
  `job_seconds` taken out): upload -> submitted to the parser, parser done -> hint, hint ->
  parsed, parsed -> embedding, embedding -> vectors stored (the fake embedder's latency in it),
  vectors -> complete, and everything beyond the parser; the embedding stage also split into
  the time its requests were out (the union of their spans, as the job records it) and the
  rest, docingest's own.
`--idle-uploads N` first times N uploads by the same 4 clients with no worker running (and
prints the CPU they cost per kind of process).
`--statements N` has PostgreSQL log every statement and prints, per run, how many ran and the
N shapes that took longest (logging them slows the server: time such runs for nothing else).
`--waits` samples `pg_stat_activity` every 2 ms while the uploads run and prints what the
uploads' own statements were doing (on the CPU or waiting, and for what), in shares of samples.
`--async-commit` runs PostgreSQL with `synchronous_commit = off` (a diagnostic, never a
setting to judge by: it asks whether waiting for WAL flushes is what holds the 8-worker
point). Every run also prints the uploads' mean latency as the client saw it and as the
API measured it (its own request histogram, `/metrics`), so the two sides can be told apart.
`--cpu-timeline` prints how busy the machine's cores were in every tenth of a second of the
run (psutil). `--tail N` prints the milestones of the N documents that completed last
(seconds from the first upload; `parser s` is the fake parser's own time for the job).
Rerun: `.venv/bin/python bench/scaling_profile.py [--workers 1 8] [--runs 2] [--idle-uploads 80]
[--statements 12] [--waits] [--cpu-timeline] [--tail 5] [--async-commit]`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from many_documents import BackgroundSampler, log_statements, print_statements

from docingest.ops.validation import traffic
from docingest.ops.validation.scaling import IO_EMBED_JITTER_MS, IO_EMBED_MS
from docingest.ops.validation.stack import FakeLatencies, Stack

DOCS_PER_WORKER = 10


def kind(proc: psutil.Process, line: str) -> str:
    if "postgres" in (proc.info["name"] or ""):
        return "postgres"
    for needle, name in (
        ("docingest worker", "workers"),
        ("docingest api", "api"),
        ("fake_llamaparse", "fake LlamaParse"),
        ("fake_openai", "fake OpenAI"),
        ("scaling_profile", "this script (uploads)"),
    ):
        if needle in line:
            return name
    try:
        parent = " ".join(proc.parent().cmdline()) if proc.parent() else ""
    except psutil.Error:
        parent = ""
    return "fake LlamaParse parse pool" if "fake_llamaparse" in parent else "other"


def cpu_by_pid() -> dict[int, tuple[str, float]]:
    out = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            times = proc.cpu_times()
            line = " ".join(proc.info["cmdline"] or [])
            out[proc.pid] = (kind(proc, line), times.user + times.system)
        except psutil.Error:
            continue
    return out


def cpu_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds by kind of process between two `cpu_by_pid` samples."""
    cpu: dict[str, float] = {}
    for pid, (name, used) in after.items():
        cpu[name] = cpu.get(name, 0.0) + used - before.get(pid, (name, 0.0))[1]
    return cpu


def print_cpu(label: str, cpu: dict[str, float]) -> None:
    shown = sorted(((v, k) for k, v in cpu.items() if v >= 0.01), reverse=True)
    total = sum(v for v, _ in shown)
    print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for v, k in shown) + f"; all {total:.2f}")


class UploadWaits(BackgroundSampler):
    """What the uploads' statements (`WITH doc AS ...`) are doing, sampled from
    `pg_stat_activity` every 2 ms on a connection of its own while the block runs."""

    interval_s = 0.002

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.seen: collections.Counter[str] = collections.Counter()
        self._conn: psycopg.Connection[tuple[str]] | None = None

    def sample(self) -> None:
        if self._conn is None:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        for (what,) in self._conn.execute(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU')"
            " FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH doc AS%'"
        ):
            self.seen[what] += 1

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._conn is not None:
            self._conn.close()

    def print(self) -> None:
        total = sum(self.seen.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in self.seen.most_common(6))
        print(f"  upload statements, {total} samples: {shares}")


class MachineBusy(BackgroundSampler):
    """How busy all the machine's cores were, every 100 ms while the block runs."""

    interval_s = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.percents: list[float] = []
        psutil.cpu_percent(None)  # the first call only starts the interval

    def sample(self) -> None:
        self.percents.append(psutil.cpu_percent(None))

    def print(self, seconds: float) -> None:
        shown = self.percents[1 : int(seconds * 10) + 1]  # the tenths up to the last completion
        busy = sum(p >= 95 for p in shown)
        print(
            f"  cores busy (all cores >= 95 %) in {busy} of {len(shown)} tenths of a second;"
            " per tenth: " + " ".join(str(round(p)) for p in shown)
        )


def upload_seconds(stack: Stack) -> tuple[float, float]:
    """(sum of seconds, count) of `POST /v1/documents` in the API's request histogram."""
    with stack.client() as client:
        text = client.get("/metrics").text
    found = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "docingest_api_request_seconds"
        for s in family.samples
        if s.labels.get("route") == "/v1/documents" and s.labels.get("method") == "POST"
    }
    name = "docingest_api_request_seconds"
    return found.get(f"{name}_sum", 0.0), found.get(f"{name}_count", 0.0)


class TimedUploads:
    """Wraps `traffic.upload` while the block runs: each upload's seconds as the client saw
    them. The API's own measure of the same uploads is read from `/metrics` before the run's
    clock starts and after it stops (`server_before`, `server_after`), never inside it."""

    def __init__(self, stack: Stack) -> None:
        self.client_s: list[float] = []
        self._upload = traffic.upload
        self.server_before = upload_seconds(stack)
        self.server_after = self.server_before

    def __enter__(self) -> TimedUploads:
        def timed(*args: Any, **kwargs: Any) -> traffic.Upload:
            started = time.perf_counter()
            try:
                return self._upload(*args, **kwargs)
            finally:
                self.client_s.append(time.perf_counter() - started)

        traffic.upload = timed
        return self

    def __exit__(self, *exc: object) -> None:
        traffic.upload = self._upload

    def print(self) -> None:
        server = self.server_after[0] - self.server_before[0]
        count = self.server_after[1] - self.server_before[1]
        print(
            f"  upload latency, mean: {1000 * statistics.mean(self.client_s):.1f} ms at the"
            f" client, {1000 * server / max(count, 1):.1f} ms inside the API"
        )


def one_run(stack: Stack, n: int, opts: argparse.Namespace, server_log: Path | None) -> None:
    stack.restart_workers(n)
    documents = traffic.new_documents(n * DOCS_PER_WORKER, pages=2)
    log_from = server_log.stat().st_size if server_log is not None else 0
    timed = TimedUploads(stack)
    before = cpu_by_pid()
    sampler = UploadWaits(stack.dsn) if opts.waits else None
    machine = MachineBusy() if opts.cpu_timeline else contextlib.nullcontext()
    started, t0 = time.time(), time.monotonic()
    with machine:
        with sampler or contextlib.nullcontext(), timed:
            job_ids = traffic.upload_all(stack, documents)
        uploaded = time.monotonic() - t0
        during_uploads = cpu_by_pid()
        rows = stack.wait_terminal(job_ids, 900)
    after = cpu_by_pid()
    timed.server_after = upload_seconds(stack)
    assert all(r["status"] == "complete" for r in rows), "a document did not complete"
    whole = max(float(r["updated"]) for r in rows) - started
    last_created = max(float(r["created"]) for r in rows) - started
    latency = sorted(float(r["updated"]) - float(r["created"]) for r in rows)
    print(
        f"{n} workers, {len(rows)} documents: uploads {uploaded:.2f} s (last created at"
        f" {last_created:.2f} s); latency per document p50 {latency[len(latency) // 2]:.2f} s,"
        f" max {latency[-1]:.2f} s; all complete at {whole:.2f} s"
    )
    print_cpu("CPU s", cpu_between(before, after))
    timed.print()
    print_cpu(
        f"CPU s while the uploads ran ({uploaded:.2f} s x {psutil.cpu_count()} cores)",
        cpu_between(before, during_uploads),
    )
    if isinstance(machine, MachineBusy):
        machine.print(whole)
    if sampler is not None:
        sampler.print()
    print_stages(stack, job_ids, started, opts.tail)
    if server_log is not None:
        with server_log.open("rb") as log:
            log.seek(log_from)
            print_statements(log.read().decode(errors="replace"), opts.statements)


STAGES = (  # (label, from, to): first event of each action (or action:outcome) per job
    ("upload -> submitted", "created", "parse.submitted"),
    ("parser done -> hint", "parser_done", "webhook.accepted:woken"),
    ("hint -> parsed", "webhook.accepted:woken", "job.parsed"),
    ("parsed -> embedding", "job.parsed", "job.embedding_in_progress"),
    ("embedding -> stored", "job.embedding_in_progress", "job.embeddings_stored"),
    ("stored -> complete", "job.embeddings_stored", "job.complete"),
    ("beyond the parser", "created", "complete_less_parser"),
    # the embedding stage split: the union of its requests' spans (`embed_provider_s`), and
    # the rest (held in the batcher or behind its requests in flight, storing, on the CPU)
    ("  embedder's spans", "job.embedding_in_progress", "embedding_provider_done"),
    ("  docingest's own", "embedding_provider_done", "job.embeddings_stored"),
)


TAIL = (  # (column, event): the milestones of one document, for --tail
    ("created", "created"),
    ("submitted", "parse.submitted"),
    ("parser s", None),
    ("hint", "webhook.accepted:woken"),
    ("parsed", "job.parsed"),
    ("embedding", "job.embedding_in_progress"),
    ("stored", "job.embeddings_stored"),
    ("complete", "job.complete"),
)


def print_stages(stack: Stack, job_ids: list[str], started: float, tail: int) -> None:
    parser_s = stack.llamaparse_stats()["job_seconds"]
    rows = stack.query(
        "SELECT j.parse_external_id AS ext, extract(epoch FROM j.created_at)::float8 AS created,"
        " (SELECT json_object_agg(k, t) FROM (SELECT e.action || ':' || e.outcome AS k,"
        "   extract(epoch FROM min(e.at))::float8 AS t FROM docingest.events e"
        "   WHERE e.job_id = j.job_id GROUP BY 1) x) AS events,"
        " (j.progress->>'embed_provider_s')::float8 AS embed_provider_s"
        " FROM docingest.upload_jobs j WHERE j.job_id = ANY(%s::uuid[])",
        (job_ids,),
    )
    spans: dict[str, list[float]] = {label: [] for label, _, _ in STAGES}
    last: list[tuple[float, ...]] = []
    for row in rows:
        at = {k.removesuffix(":ok"): v for k, v in row["events"].items()}
        at["created"] = row["created"]
        last.append(
            tuple(
                parser_s[row["ext"]] if event is None else at.get(event, float("nan")) - started
                for _, event in TAIL
            )
        )
        at["parser_done"] = at["parse.submitted"] + parser_s[row["ext"]]
        at["complete_less_parser"] = at["job.complete"] - parser_s[row["ext"]]
        if "job.embedding_in_progress" in at and row["embed_provider_s"] is not None:
            at["embedding_provider_done"] = (
                at["job.embedding_in_progress"] + row["embed_provider_s"]
            )
        for label, start, end in STAGES:
            if start in at and end in at:
                spans[label].append(at[end] - at[start])
    for label, values in spans.items():
        if values:
            values.sort()
            print(
                f"    {label:22s} p50 {statistics.median(values) * 1000:5.0f} ms,"
                f" p90 {values[int(0.9 * (len(values) - 1))] * 1000:5.0f} ms,"
                f" max {values[-1] * 1000:5.0f} ms"
            )
    if tail:
        print(f"  the {tail} documents completed last, seconds from the first upload:")
        print("    " + " ".join(f"{column:>9s}" for column, _ in TAIL))
        for milestones in sorted(last, key=lambda m: m[-1], reverse=True)[:tail]:
            print("    " + " ".join(f"{value:9.2f}" for value in milestones))


def idle_uploads(stack: Stack, n: int) -> None:
    stack.set_workers(0)
    documents = traffic.new_documents(n, pages=2)
    before, t0 = cpu_by_pid(), time.monotonic()
    job_ids = traffic.upload_all(stack, documents)
    print(f"{n} uploads by 4 clients, no worker running: {time.monotonic() - t0:.2f} s")
    print_cpu("CPU s", cpu_between(before, cpu_by_pid()))
    stack.set_workers(2)  # done before the runs, so no run processes them
    stack.wait_terminal(job_ids, 900)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--idle-uploads", type=int, default=0, metavar="N")
    ap.add_argument("--statements", type=int, default=0, metavar="N")
    ap.add_argument("--waits", action="store_true")
    ap.add_argument("--cpu-timeline", action="store_true")
    ap.add_argument("--tail", type=int, default=0, metavar="N")
    ap.add_argument("--async-commit", action="store_true")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="docingest-scaling-profile-") as root,
        Stack(Path(root)) as stack,
    ):
        stack.start(workers=2)
        stack.reset_latencies()
        stack.openai_control(latency_ms=IO_EMBED_MS, latency_jitter_ms=IO_EMBED_JITTER_MS)
        fakes = FakeLatencies(
            IO_EMBED_MS,
            IO_EMBED_JITTER_MS,
            stack.latencies.parse_ms,
            stack.latencies.parse_jitter_ms,
        )
        if args.async_commit:
            with psycopg.connect(stack.dsn, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_commit = off")
                conn.execute("SELECT pg_reload_conf()")
        settings = {k: v for k, v in stack.describe_settings().items() if k != "fakes"}
        settings["synchronous_commit"] = "off (diagnostic)" if args.async_commit else "on"
        print(
            f"fresh validate stack, production defaults; {settings};"
            f" fakes: {fakes.describe()}; {DOCS_PER_WORKER} two-page documents per worker,"
            " 4 upload clients"
        )
        if args.idle_uploads:
            idle_uploads(stack, args.idle_uploads)
        server_log = log_statements(stack.dsn) if args.statements else None
        for n in args.workers:
            for _ in range(args.runs):
                one_run(stack, n, args, server_log)


if __name__ == "__main__":
    main()
