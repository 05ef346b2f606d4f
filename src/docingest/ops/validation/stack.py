"""A real docingest stack for validation: embedded Postgres, the API, N worker processes,
and the fake LlamaParse (callback mode) and fake OpenAI servers, all on loopback.

Everything runs as separate processes started from this interpreter's `docingest`
package, exactly as an operator would start them, with the production defaults: the stack
sets only what a deployment must set (database, secrets, where the services are), never a
lease, cool-down, retry budget, pool size or concurrency. `effective_settings()` is what
every process read. The fakes answer with realistic, jittered latencies (`FakeLatencies`).
Faults are injected through the fakes' `/control` routes, by signals to worker processes,
and by an immediate Postgres restart; each is recorded with its proof (`kills`, `restarts`).
Process output goes to `<root>/logs/<name>.log` (ids only; nothing logs document text).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg.rows import dict_row

from docingest.config import Settings
from docingest.domain.states import TERMINAL
from docingest.security.bearer_tokens import mint_token
from docingest.store import embedded_pg, migrate
from docingest.store.liveness import HELD_LOCK_KEYS
from docingest.testing.procs import free_port, stop_process, wait_for, wait_http_ok
from docingest.worker.base import WorkerOptions
from docingest.worker.runner import DEFAULT_CONCURRENCY, pool_size

EMBEDDING = ("embedding_queued", "embedding_in_progress")
LLAMAPARSE_KEY = "llx-validate"
OPENAI_KEY = "sk-validate"
_JOBS = (  # status and timings of the given jobs (epoch seconds from the database's clock)
    "SELECT job_id::text AS job_id, document_id::text AS document_id,"
    " status::text AS status, last_error, retry_count, attempt, claimed_by,"
    " extract(epoch FROM created_at)::float8 AS created,"
    " extract(epoch FROM updated_at)::float8 AS updated"
    " FROM docingest.upload_jobs WHERE job_id = ANY(%s::uuid[])"
)


@dataclass(frozen=True)
class FakeLatencies:
    """What the fake services take per call: uniform in [base, base + jitter] ms."""

    embed_ms: float = 300.0  # an OpenAI embeddings request: 300-800 ms
    embed_jitter_ms: float = 500.0
    parse_ms: float = 1_000.0  # a LlamaParse job, queued to done: 1-3 s
    parse_jitter_ms: float = 2_000.0

    def describe(self) -> str:
        return (
            f"embedder {_range(self.embed_ms, self.embed_jitter_ms)},"
            f" parser {_range(self.parse_ms, self.parse_jitter_ms)}"
        )


def _range(base: float, jitter: float) -> str:
    return f"{base:.0f}-{base + jitter:.0f} ms" if jitter else f"{base:.0f} ms"


@dataclass
class Stack:
    """Owns every process of one stack; `close()` (or the context manager) stops them."""

    root: Path
    latencies: FakeLatencies = field(default_factory=FakeLatencies)
    dsn: str = ""
    api_url: str = ""
    llamaparse_url: str = ""
    openai_url: str = ""
    jwt_secret: str = field(default_factory=lambda: f"validate-jwt-{uuid.uuid4().hex}")
    webhook_secret: str = field(default_factory=lambda: f"validate-wh-{uuid.uuid4().hex}")
    kills: list[dict[str, Any]] = field(default_factory=list)  # every SIGKILL, with its proof
    restarts: list[dict[str, Any]] = field(default_factory=list)  # every Postgres restart
    _server: Any = None
    _services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _worker_env: dict[str, str] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _spawned: int = 0

    # -- start and stop -------------------------------------------------------------------

    def start(self, workers: int) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self._server = embedded_pg.server_at(self.root / "pg", cleanup_mode="delete")
        self.dsn = self._server.get_uri()
        migrate.upgrade(self.dsn)
        lp_port, oa_port, api_port = free_port(), free_port(), free_port()
        self.llamaparse_url = f"http://127.0.0.1:{lp_port}"
        self.openai_url = f"http://127.0.0.1:{oa_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        lat = self.latencies
        self._spawn(
            "fake_llamaparse",
            [
                *("-m", "docingest.testing.fake_llamaparse", "--port", str(lp_port)),
                *("--mode", "callback", "--api-key", LLAMAPARSE_KEY),
                *("--webhook-secret", self.webhook_secret),
            ],
            ready=f"{self.llamaparse_url}/healthz",
        )
        self._spawn(
            "fake_openai",
            [
                *("-m", "docingest.testing.fake_openai", "--port", str(oa_port)),
                *("--api-key", OPENAI_KEY, "--latency-ms", str(lat.embed_ms)),
                *("--latency-jitter-ms", str(lat.embed_jitter_ms)),
            ],
            ready=f"{self.openai_url}/healthz",
        )
        self.reset_latencies()
        self._spawn(
            "api",
            ["-m", "docingest", "api", "--port", str(api_port)],
            ready=f"{self.api_url}/readyz",
        )
        self.set_workers(workers)

    def close(self) -> None:
        grace = self.effective_settings().lease_seconds + 5 if self.dsn else 10
        for proc in [*self._workers, *self._services.values()]:
            stop_process(proc, grace_s=grace, kill_group=True)
        self._workers.clear()
        self._services.clear()
        for fh in self._logs:
            fh.close()
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every docingest process of this stack gets (DESIGN.md §7): where
        things are and the secrets; every tuning setting keeps its default."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
        return {
            **base,
            "DOCINGEST_HOME": str(self.root / "home"),
            "DOCINGEST_DATABASE_URL": self.dsn,
            "DOCINGEST_JWT_SECRET": self.jwt_secret,
            "DOCINGEST_WEBHOOK_SECRET": self.webhook_secret,
            "DOCINGEST_PUBLIC_URL": self.api_url,
            "DOCINGEST_PARSER": "llamaparse",
            "DOCINGEST_LLAMAPARSE_URL": self.llamaparse_url,
            "DOCINGEST_LLAMAPARSE_API_KEY": LLAMAPARSE_KEY,
            "DOCINGEST_EMBEDDER": "openai",
            "DOCINGEST_OPENAI_BASE_URL": f"{self.openai_url}/v1",
            "DOCINGEST_OPENAI_API_KEY": OPENAI_KEY,
            "DOCINGEST_LOG_FORMAT": "json",
            **(extra or {}),
        }

    def effective_settings(self) -> Settings:
        """The settings every process of this stack runs with (read exactly as they read them)."""
        return Settings.from_env(self.env(self._worker_env))

    def describe_settings(self) -> dict[str, Any]:
        """The settings verdicts depend on, as the processes run them."""
        s = self.effective_settings()
        return {
            "lease_s": s.lease_seconds,
            "max_retries": s.max_retries,
            "circuit_failures": s.circuit_failures,
            "circuit_cooldown_s": s.circuit_cooldown_s,
            "parse_callback_timeout_s": s.parse_callback_timeout_s,
            "worker_concurrency": DEFAULT_CONCURRENCY,
            "worker_pool_size": pool_size(DEFAULT_CONCURRENCY),
            "embedding_jobs": WorkerOptions.max_embedding_jobs,
            "embed_batch_size": s.embed_batch_size,
            "embed_rpm_tpm": f"{s.embed_rpm or 'unlimited'}/{s.embed_tpm or 'unlimited'}",
            "parser": s.parser,
            "fakes": self.latencies.describe(),
        }

    def stop_api(self) -> None:
        stop_process(self._services.pop("api"), kill_group=True)

    def start_api(self) -> None:
        """Start the API on the stack's port; returns once it is ready."""
        port = self.api_url.rsplit(":", 1)[1]
        self._spawn(
            "api", ["-m", "docingest", "api", "--port", port], ready=f"{self.api_url}/readyz"
        )

    def run_cli(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """`docingest ARGS` with this stack's environment, as an operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "docingest", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def _spawn(self, name: str, args: list[str], ready: str | None = None) -> None:
        self._services[name] = self._popen(name, args, self.env())
        if ready is not None:
            wait_http_ok(ready, 60, proc=self._services[name])

    def _popen(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # -- workers ----------------------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        return len(self._workers)

    def set_workers(self, n: int) -> None:
        """Start or gracefully stop worker processes until `n` run (default concurrency)."""
        while len(self._workers) > n:
            stop_process(self._workers.pop(), grace_s=self.effective_settings().lease_seconds)
        while len(self._workers) < n:
            self._spawned += 1
            env = self.env(self._worker_env)
            self._workers.append(
                self._popen(f"worker-{self._spawned}", ["-m", "docingest", "worker"], env)
            )

    def restart_workers(self, n: int, **env: str) -> None:
        """Stop every worker, start `n` fresh ones with `env` on top of the stack's (e.g. the
        local parser) and wait until each has registered its session and listens."""
        self.set_workers(0)
        self._worker_env = dict(env)
        self.set_workers(n)
        self.wait_workers_ready(n, 90)

    def wait_workers_ready(self, n: int, timeout_s: float) -> None:
        """Until `n` workers hold their session lock and LISTEN for jobs."""

        def ready() -> bool:
            [row] = self.query(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %%')"
                f" AS listening, (SELECT count(*) FROM ({HELD_LOCK_KEYS}) AS k) AS alive"
            )
            return bool(row["listening"] >= n and row["alive"] >= n)

        wait_for(ready, timeout_s, f"{n} workers did not become ready")

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._workers]

    def cpu_pids(self) -> list[int]:
        """Process trees holding all of the stack's CPU time: this process (it started every
        service, worker and fake, and uploads) and the PostgreSQL server (a daemon)."""
        return [os.getpid(), int(self._server.get_pid())]

    def kill_worker(self, pid: int, **proof: Any) -> dict[str, Any]:
        """SIGKILL worker `pid`, reap it (its exit status proves the signal) and start a
        replacement at once, as `docingest up`, systemd or Kubernetes would. Recorded in
        `kills` with `proof`."""
        proc = next(p for p in self._workers if p.pid == pid)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        code = proc.wait()
        self._workers.remove(proc)
        self.set_workers(len(self._workers) + 1)
        entry = {"pid": pid, "exit": code, "killed_at": killed_at, **proof}
        self.kills.append(entry)
        return entry

    # -- faults -----------------------------------------------------------------------------

    def restart_postgres(self) -> float:
        """Immediate shutdown (no checkpoint, like a crash) and start on the same data.
        Returns when the server answers again (unix time); recorded in `restarts`."""
        before = self._server.get_pid()
        down_at = time.time()
        embedded_pg.restart_immediate(self._server)
        up_at = time.time()
        self.restarts.append(
            {"postmaster_before": before, "postmaster_after": self._server.get_pid(),
             "down_at": down_at, "up_at": up_at}
        )  # fmt: skip
        return up_at

    def llamaparse_control(self, **faults: object) -> None:
        httpx.post(f"{self.llamaparse_url}/control", json=faults, timeout=10).raise_for_status()

    def llamaparse_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.llamaparse_url}/stats", timeout=10).json()
        return stats

    def openai_control(self, **faults: object) -> None:
        httpx.post(f"{self.openai_url}/control", json=faults, timeout=10).raise_for_status()

    def openai_stats(self, *, reset: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.openai_url}/stats", timeout=10).json()
        if reset:
            httpx.post(f"{self.openai_url}/stats/reset", timeout=10).raise_for_status()
        return stats

    def reset_latencies(self) -> None:
        """The fakes back to the stack's realistic latencies."""
        lat = self.latencies
        self.openai_control(latency_ms=lat.embed_ms, latency_jitter_ms=lat.embed_jitter_ms)
        self.llamaparse_control(
            parse_delay_ms=lat.parse_ms, parse_delay_jitter_ms=lat.parse_jitter_ms
        )

    def circuit_state(self, service: str) -> str:
        rows = self.query(
            "SELECT state FROM docingest.circuit_breakers WHERE service = %s", (service,)
        )
        return str(rows[0]["state"]) if rows else "closed"

    # -- clients ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def client(
        self, user: uuid.UUID | None = None, *, admin: bool = False
    ) -> Iterator[httpx.Client]:
        token = mint_token(self.jwt_secret, user or uuid.uuid4(), admin=admin, ttl_s=6 * 3600)
        with httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            yield c

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        """A new autocommit connection to the stack's database, rows as dicts."""
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """Status and timings of `job_ids` (epoch seconds from the database's clock)."""
        return self.query(_JOBS, (job_ids,))

    def wait_terminal(self, job_ids: list[str], timeout_s: float) -> list[dict[str, Any]]:
        """Poll the job table until every job is terminal; TimeoutError names how many are not.

        One connection for the whole wait (a new one only after it failed, e.g. across a
        Postgres restart): a connection per poll started a server process ten times a second
        on the cores whose use the scaling points measure."""
        deadline = time.monotonic() + timeout_s
        conn: psycopg.Connection[dict[str, Any]] | None = None
        try:
            while True:
                lost: psycopg.OperationalError | None = None
                try:
                    if conn is None:
                        conn = self.connect()
                    rows = conn.execute(_JOBS, (job_ids,)).fetchall()
                except psycopg.OperationalError as exc:
                    if conn is not None:
                        conn.close()
                    conn, rows, lost = None, [], exc
                pending = [r for r in rows if r["status"] not in TERMINAL]
                if rows and not pending and len(rows) == len(job_ids):
                    return rows
                if time.monotonic() > deadline:
                    if lost is not None:
                        raise TimeoutError("the database did not answer the wait") from lost
                    raise TimeoutError(f"{len(pending)} of {len(job_ids)} jobs not terminal")
                time.sleep(0.1)  # poll interval; the condition is the job rows
        finally:
            if conn is not None:
                conn.close()
