"""A real docingest stack for validation: embedded Postgres, the API, N worker processes,
and the fake LlamaParse (callback mode) and fake OpenAI servers, all on loopback.

Everything runs as separate processes started from this interpreter's `docingest`
package, exactly as an operator would start them; faults are injected through the fakes'
`/control` routes, by signals to worker processes, and by an immediate Postgres restart.
Process output goes to `<root>/logs/<name>.log` (ids only; nothing logs document text).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
from psycopg.rows import dict_row

from docingest.api.auth import mint_token
from docingest.store import embedded_pg, migrate
from docingest.testing.procs import free_port, stop_process, wait_for, wait_http_ok

TERMINAL = ("complete", "failed_parse", "failed_chunking", "failed_embedding")
LLAMAPARSE_KEY = "llx-validate"
OPENAI_KEY = "sk-validate"


@dataclass(frozen=True)
class StackSettings:
    """Knobs of one validation stack (seconds unless named otherwise)."""

    lease_seconds: int = 10
    circuit_cooldown_seconds: int = 3
    callback_timeout_seconds: int = 15
    embed_latency_ms: float = 50.0
    embed_dimensions: int = 1536
    max_upload_bytes: int = 25 * 1024 * 1024
    worker_concurrency: int = 1


@dataclass
class Stack:
    """Owns every process of one stack; `close()` (or the context manager) stops them."""

    root: Path
    settings: StackSettings
    dsn: str = ""
    api_url: str = ""
    llamaparse_url: str = ""
    openai_url: str = ""
    jwt_secret: str = field(default_factory=lambda: f"validate-jwt-{uuid.uuid4().hex}")
    webhook_secret: str = field(default_factory=lambda: f"validate-wh-{uuid.uuid4().hex}")
    _server: Any = None
    _services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
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
                *("--api-key", OPENAI_KEY, "--latency-ms", str(self.settings.embed_latency_ms)),
            ],
            ready=f"{self.openai_url}/healthz",
        )
        self._spawn(
            "api",
            ["-m", "docingest", "api", "--port", str(api_port)],
            ready=f"{self.api_url}/readyz",
        )
        self.set_workers(workers)

    def close(self) -> None:
        for proc in [*self._workers, *self._services.values()]:
            stop_process(proc, grace_s=self.settings.lease_seconds + 5, kill_group=True)
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

    def env(self) -> dict[str, str]:
        """The environment every docingest process of this stack gets (DESIGN.md §7)."""
        import os

        s = self.settings
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
            "DOCINGEST_EMBED_DIMENSIONS": str(s.embed_dimensions),
            "DOCINGEST_EMBED_RPM": "100000",
            "DOCINGEST_EMBED_TPM": "100000000",
            "DOCINGEST_MAX_UPLOAD_BYTES": str(s.max_upload_bytes),
            "DOCINGEST_LEASE_SECONDS": str(s.lease_seconds),
            "DOCINGEST_CIRCUIT_COOLDOWN_SECONDS": str(s.circuit_cooldown_seconds),
            "DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS": str(s.callback_timeout_seconds),
            "DOCINGEST_LOG_FORMAT": "json",
        }

    def restart_api(self) -> None:
        """Stop the API and start a fresh one on the same port; returns once it is ready."""
        stop_process(self._services.pop("api"), kill_group=True)
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
        self._services[name] = self._popen(name, args)
        if ready is not None:
            wait_http_ok(ready, 60, proc=self._services[name])

    def _popen(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    # -- workers ----------------------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        return len(self._workers)

    def set_workers(self, n: int, embedding_jobs: int | None = None) -> None:
        """Start or gracefully stop worker processes until `n` run (`embedding_jobs`: the
        started ones' `--embedding-jobs`, default the worker's)."""
        while len(self._workers) > n:
            stop_process(self._workers.pop(), grace_s=self.settings.lease_seconds + 5)
        while len(self._workers) < n:
            self._spawned += 1
            args = ["-m", "docingest", "worker"]
            args += ["--concurrency", str(self.settings.worker_concurrency)]
            if embedding_jobs is not None:
                args += ["--embedding-jobs", str(embedding_jobs)]
            self._workers.append(self._popen(f"worker-{self._spawned}", args))

    def restart_workers(self, n: int, embedding_jobs: int | None = None) -> None:
        """Stop every worker, start `n` fresh ones and wait until each listens for work."""
        self.set_workers(0)
        self.set_workers(n, embedding_jobs)
        self.wait_listeners(n, 60)

    def wait_listeners(self, n: int, timeout_s: float) -> None:
        """Until `n` database sessions LISTEN for new jobs: each worker has one."""
        wait_for(
            lambda: (
                self.query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN %%'"
                )[0]["n"]
                >= n
            ),
            timeout_s,
            f"{n} workers did not start listening",
        )

    def wait_claimed(self, job_ids: list[str], timeout_s: float) -> None:
        """Until a worker holds a lease on one of `job_ids`."""
        wait_for(
            lambda: bool(
                self.query(
                    "SELECT 1 FROM docingest.upload_jobs WHERE job_id = ANY(%s::uuid[])"
                    " AND claimed_by IS NOT NULL",
                    (job_ids,),
                )
            ),
            timeout_s,
            "no job was claimed",
        )

    def kill_worker_holding(self, job_ids: list[str], timeout_s: float = 60) -> str:
        """SIGKILL the worker process that holds a lease on one of `job_ids`; start a
        replacement (as `docingest up` would). Returns the job id it held."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            holders = self.query(
                "SELECT job_id::text AS job_id, claimed_by FROM docingest.upload_jobs"
                " WHERE job_id = ANY(%s::uuid[]) AND claimed_by IS NOT NULL",
                (job_ids,),
            )
            for row in holders:
                for proc in self._workers:
                    # worker ids are "host:pid:nonce" (worker/base.py new_worker_id)
                    if str(row["claimed_by"]).split(":")[1] == str(proc.pid):
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        self._workers.remove(proc)
                        self.set_workers(len(self._workers) + 1)
                        return str(row["job_id"])
            time.sleep(0.05)  # poll interval; the condition is a lease row
        raise TimeoutError("no worker claimed one of the jobs in time")

    # -- faults -----------------------------------------------------------------------------

    def restart_postgres(self) -> None:
        """Immediate shutdown (no checkpoint, like a crash) and start on the same data."""
        embedded_pg.restart_immediate(self._server)

    def llamaparse_control(self, **faults: object) -> None:
        httpx.post(f"{self.llamaparse_url}/control", json=faults, timeout=10).raise_for_status()

    def openai_control(self, **faults: object) -> None:
        httpx.post(f"{self.openai_url}/control", json=faults, timeout=10).raise_for_status()

    def openai_stats(self, *, reset: bool = False) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.openai_url}/stats", timeout=10).json()
        if reset:
            httpx.post(f"{self.openai_url}/stats/reset", timeout=10).raise_for_status()
        return stats

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

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()

    def jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """Status and timings of `job_ids` (epoch seconds from the database's clock)."""
        return self.query(
            "SELECT job_id::text AS job_id, document_id::text AS document_id,"
            " status::text AS status, last_error, retry_count,"
            " extract(epoch FROM created_at)::float8 AS created,"
            " extract(epoch FROM updated_at)::float8 AS updated"
            " FROM docingest.upload_jobs WHERE job_id = ANY(%s::uuid[])",
            (job_ids,),
        )

    def wait_terminal(self, job_ids: list[str], timeout_s: float) -> list[dict[str, Any]]:
        """Poll the job table until every job is terminal; TimeoutError names how many are not."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.jobs(job_ids)
            pending = [r for r in rows if r["status"] not in TERMINAL]
            if not pending and len(rows) == len(job_ids):
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(job_ids)} jobs not terminal")
            time.sleep(0.2)  # poll interval; the condition is the job rows
