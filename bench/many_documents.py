"""Many small documents through `docingest ingest --json`, against its floor.

Generates N text PDFs (testing/pdfgen, unique text each), starts the fake OpenAI server at
`--latency-ms` per request and a scratch embedded PostgreSQL (migrated; its start-up is not
timed), then runs `docingest ingest DIR --json` as a user would (OpenAI embedder, every
other setting at its default: one worker, 2 slots) and prints:
- wall time of the ingest command, chunks, requests the fake answered;
- the floor: raw text extraction of the same PDFs with pypdfium2 (one process, page by page)
  + ceil(chunks / 256) x the request latency;
- the verdicts of issue 12: wall <= 2x floor, requests <= ceil(chunks / 256) + workers;
- the CPU the run used: the ingest command with its parse children (rusage), PostgreSQL
  (sampled), the fake.
`--py-spy FILE` records the ingest process with py-spy (collapsed stacks, `--subprocesses`)
so the profile can be read with any flame-graph tool or `sort | head`. `--statements N` logs
every statement's duration on the scratch server and prints the N statement shapes that took
the most time (logging slows the run: its wall time is not the benchmark's). `--timeline`
prints each event action's first and last time, in seconds from the command's start.
`--concurrency N` runs the ingest command with N slots instead of its default (2).
Rerun: `.venv/bin/python bench/many_documents.py [--docs 40] [--pages 50] [--latency-ms 50]`.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

import httpx
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stack import scratch_database
from docingest.testing.pdfgen import make_pdf
from docingest.testing.procs import free_port, run_process

BATCH = 256
WORKERS = 1  # `docingest ingest` runs one worker in its own process


class BackgroundSampler:
    """Calls `sample()` on a thread of its own every `interval_s` while the block runs."""

    interval_s = 0.05

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PostgresCpu(BackgroundSampler):
    """CPU seconds used by PostgreSQL processes while the block runs: its backends come and go
    with the command's connections, so they are sampled every 50 ms (a backend's last 50 ms
    can be missed)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[int, tuple[float, float]] = {}

    def sample(self) -> None:
        for proc in psutil.process_iter(["name"]):
            if "postgres" not in (proc.info["name"] or ""):
                continue
            try:
                used = sum(proc.cpu_times()[:2])
            except psutil.Error:
                continue
            first = self._seen.get(proc.pid, (used, used))[0]
            self._seen[proc.pid] = (first, used)

    @property
    def seconds(self) -> float:
        return sum(last - first for first, last in self._seen.values())


def extraction_floor(paths: list[Path]) -> float:
    """Seconds to pull the raw text out of every page with pypdfium2, nothing else."""
    import pypdfium2

    started = time.perf_counter()
    for path in paths:
        pdf = pypdfium2.PdfDocument(str(path))
        for page in pdf:
            page.get_textpage().get_text_range()
        pdf.close()
    return time.perf_counter() - started


_DURATION = re.compile(r"LOG:\s+duration: ([\d.]+) ms\s+(?:statement|execute [^:]*):\s*")


def log_statements(dsn: str) -> Path:
    """Have the scratch server log every statement's duration; its log file (pgserver's)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        conn.execute("ALTER SYSTEM SET log_line_prefix = ''")
        conn.execute("SELECT pg_reload_conf()")
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return Path(row[0]) / "log"


def print_statements(log: str, top: int) -> None:
    """Execution time per statement shape (literals and parameters folded), largest first."""
    total: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    lines = log.split("\n")
    for i, line in enumerate(lines):
        match = _DURATION.match(line)
        if match is None:
            continue
        text = line[match.end() :] or " ".join(lines[i + 1 : i + 3])  # multi-line statements
        shape = re.sub(r"\$\d+|'[^']*'", "?", " ".join(text.split()))[:100]
        total[shape] += float(match.group(1)) / 1000
        calls[shape] += 1
    print(
        f"statement time {sum(total.values()):.2f} s over {sum(calls.values())} statements"
        " (logged durations, execute phase):"
    )
    for shape, seconds in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds:6.2f} s {calls[shape]:6d} x  {shape}")


def print_timeline(dsn: str, started_at: float) -> None:
    """Each job event action's first and last time, seconds from the command's start."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT action, extract(epoch FROM min(at)) - %s, extract(epoch FROM max(at)) - %s,"
            " count(*) FROM docingest.events WHERE job_id IS NOT NULL GROUP BY action ORDER BY 2",
            (started_at, started_at),
        ).fetchall()
    for action, first, last, n in rows:
        print(f"  {action:28s} first {first:6.2f} s  last {last:6.2f} s  ({n})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--py-spy", type=Path, default=None)
    ap.add_argument("--statements", type=int, default=0, metavar="N")
    ap.add_argument("--timeline", action="store_true")
    ap.add_argument("--concurrency", type=int, default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="docingest-many-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the generated PDFs
    paths = []
    for seed in range(args.docs):
        path = folder / f"doc-{seed:03d}.pdf"
        path.write_bytes(make_pdf(900_000 + seed, pages=args.pages))
        paths.append(path)
    extraction_floor(paths[:2])  # warm the library and the page cache
    extract_s = extraction_floor(paths)

    port = free_port()
    fake = [sys.executable, "-m", "docingest.testing.fake_openai", "--port", str(port)]
    fake += ["--latency-ms", str(args.latency_ms)]
    with (
        run_process(fake, ready_url=f"http://127.0.0.1:{port}/healthz") as fake_proc,
        scratch_database() as (dsn, home),
    ):
        httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"input": ["warm up"], "model": "text-embedding-3-small"},
        ).raise_for_status()
        httpx.post(f"http://127.0.0.1:{port}/stats/reset").raise_for_status()
        server_log = log_statements(dsn) if args.statements else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
        env.update(
            DOCINGEST_HOME=str(home),
            DOCINGEST_DATABASE_URL=dsn,
            DOCINGEST_EMBEDDER="openai",
            DOCINGEST_OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
            DOCINGEST_OPENAI_API_KEY="sk-bench",
        )
        cmd = [sys.executable, "-m", "docingest", "ingest", str(folder), "--json"]
        if args.concurrency is not None:
            cmd += ["--concurrency", str(args.concurrency)]
        if args.py_spy is not None:
            # the py-spy installed beside this interpreter (the venv's bin is not always on PATH)
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy, "record", "--subprocesses", "--format", "raw", "--rate", "100",
                   "-o", str(args.py_spy), "--", *cmd]  # fmt: skip
        fake_cpu = psutil.Process(fake_proc.pid)
        fake_before = sum(fake_cpu.cpu_times()[:2])
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with PostgresCpu() as postgres:
            started, started_at = time.perf_counter(), time.time()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            wall = time.perf_counter() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        ingest_cpu = (children.ru_utime - children_before.ru_utime) + (
            children.ru_stime - children_before.ru_stime
        )
        fake_s = sum(fake_cpu.cpu_times()[:2]) - fake_before
        if done.returncode != 0:
            sys.exit(f"ingest failed ({done.returncode}): {done.stderr[-2000:]}")
        report, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
        stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
        if server_log is not None:
            print_statements(server_log.read_text(errors="replace"), args.statements)
        if args.timeline:
            print_timeline(dsn, started_at)

    docs = report["documents"]
    chunks = sum(d["chunks"] for d in docs)
    statuses = {d["status"] for d in docs}
    floor = extract_s + math.ceil(chunks / BATCH) * args.latency_ms / 1000
    requests, bound = stats["requests"], math.ceil(chunks / BATCH) + WORKERS
    slots = "2 slots" if args.concurrency is None else f"{args.concurrency} slots (--concurrency)"
    print(
        f"{len(docs)} generated PDFs x {args.pages} pages, {chunks} chunks ({statuses});"
        f" fake OpenAI at {args.latency_ms} ms/request, 1536 dims; `docingest ingest --json`"
        f" with defaults (1 worker, {slots}, 256 inputs per request); scratch embedded"
        f" PostgreSQL (start-up not timed)"
    )
    print(
        f"wall {wall:.2f} s = {chunks / wall:.0f} chunks/s; floor {floor:.2f} s (raw pypdfium2"
        f" extraction {extract_s:.2f} s + {math.ceil(chunks / BATCH)} x {args.latency_ms} ms);"
        f" wall/floor {wall / floor:.2f}x (target <= 2x)"
    )
    print(
        f"CPU during the run: ingest command and its parse children {ingest_cpu:.2f} s,"
        f" PostgreSQL {postgres.seconds:.2f} s (sampled every 50 ms), fake OpenAI {fake_s:.2f} s;"
        f" {wall:.2f} s x {os.cpu_count()} cores available"
    )
    print(
        f"requests {requests} (answered {stats['status_counts'].get('200', 0)}), bound"
        f" ceil({chunks}/{BATCH}) + {WORKERS} = {bound}:"
        f" {'ok' if requests <= bound else 'OVER'}; inputs {stats['inputs']}"
    )


if __name__ == "__main__":
    main()
