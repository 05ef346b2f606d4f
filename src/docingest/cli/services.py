"""Long-running processes: `api`, `worker`, and `up` (API + N workers, one command)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import prometheus_client
import typer

from docingest import bootstrap
from docingest.cli.common import (
    build_runtime,
    config_errors_exit,
    err_console,
    fail,
    load_settings,
    run_async,
)
from docingest.store import migrate
from docingest.worker.runner import DEFAULT_CONCURRENCY

NoMigrate = Annotated[
    bool,
    typer.Option(
        "--no-migrate",
        help="Apply no migrations at start-up: for a database role without DDL rights "
        "(run `docingest db upgrade` as the schema owner first).",
    ),
]


def api(
    host: Annotated[
        str, typer.Option(envvar="DOCINGEST_API_HOST", help="Interface to bind.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DOCINGEST_API_PORT", help="Port to bind.")] = 8000,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            envvar="DOCINGEST_API_SSL_CERTFILE", help="Serve HTTPS with this PEM certificate."
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(envvar="DOCINGEST_API_SSL_KEYFILE", help="PEM private key of --ssl-certfile."),
    ] = None,
    no_migrate: NoMigrate = False,
) -> None:
    """Run the HTTP API (FastAPI + uvicorn); HTTPS when given a certificate and key. With
    --no-migrate it starts on any schema and /readyz answers 503 until migrations are current."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        err_console.print(
            "[red]configuration error:[/red] --ssl-certfile and --ssl-keyfile must be given together"
        )
        raise typer.Exit(2)
    settings = load_settings(log_format="json")
    rt = build_runtime(settings, migrate_schema=not no_migrate)
    from docingest.api.main import create_app
    from docingest.api.server import serve

    serve(
        create_app(rt),
        settings.edge,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def worker(
    concurrency: Annotated[
        int,
        typer.Option(
            envvar="DOCINGEST_WORKER_CONCURRENCY", min=1, help="Async job slots in this process."
        ),
    ] = DEFAULT_CONCURRENCY,
    embedding_jobs: Annotated[
        int,
        typer.Option(
            envvar="DOCINGEST_WORKER_EMBEDDING_JOBS",
            min=1,
            help="Jobs held at once in embedding, outside the slots; their texts share requests.",
        ),
    ] = 32,
    once: Annotated[
        bool, typer.Option("--once", help="Drain what is claimable now, then exit.")
    ] = False,
    metrics_port: Annotated[
        int,
        typer.Option(
            envvar="DOCINGEST_WORKER_METRICS_PORT",
            min=0,
            max=65535,
            help="Serve Prometheus /metrics on this port (0: off).",
        ),
    ] = 0,
    metrics_host: Annotated[
        str,
        typer.Option(envvar="DOCINGEST_WORKER_METRICS_HOST", help="Interface for /metrics."),
    ] = "127.0.0.1",
    no_migrate: NoMigrate = False,
) -> None:
    """Run one worker process (claims jobs from Postgres; SIGTERM finishes or releases work).
    With --no-migrate it refuses to start unless the schema is at this build's head."""
    settings = load_settings(log_format="json")
    rt = build_runtime(settings, migrate_schema=not no_migrate)
    if no_migrate:
        _require_schema_at_head(rt.dsn)
    from docingest.worker.runner import run_worker

    if metrics_port:
        # a daemon thread serving this process's registry (worker/metrics.py)
        prometheus_client.start_http_server(metrics_port, addr=metrics_host)
    run_async(run_worker(rt, concurrency=concurrency, max_embedding_jobs=embedding_jobs, once=once))


def _require_schema_at_head(dsn: str) -> None:
    version, head = migrate.current_version(dsn), migrate.head()
    if version != head:
        fail(
            f"database schema is at version {version}, this build needs {head}: "
            "run `docingest db upgrade` as the schema owner",
            1,
        )


def up(
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to start.")] = 2,
    port: Annotated[int, typer.Option(envvar="DOCINGEST_API_PORT", help="API port.")] = 8000,
    host: Annotated[str, typer.Option(envvar="DOCINGEST_API_HOST")] = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(min=1, help="Slots per worker process.")] = 2,
    worker_metrics_base_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Worker i serves Prometheus /metrics on this port + i (0: off). The interface"
            " is DOCINGEST_WORKER_METRICS_HOST.",
        ),
    ] = 0,
) -> None:
    """API + N worker processes on one database; restarts a worker that dies (on the same
    metrics port)."""
    if worker_metrics_base_port and worker_metrics_base_port + workers - 1 > 65535:
        fail("--worker-metrics-base-port + --workers - 1 must not exceed 65535", 2)
    settings = load_settings(log_format="json")
    with config_errors_exit():
        bootstrap.embedder(settings)  # a bad client setting stops here, before anything starts
        bootstrap.blob_store(settings)  # creates the master key file once, before children race
        bootstrap.jwt_secret(settings)
        bootstrap.webhook_secret(settings)
        dsn = bootstrap.database_url(settings)  # starts the embedded server when no URL is set
    env = {**os.environ, "DOCINGEST_DATABASE_URL": dsn, "DOCINGEST_HOME": str(settings.home)}
    base = [sys.executable, "-m", "docingest"]
    api_cmd = [*base, "api", "--host", host, "--port", str(port)]
    commands = {"api": api_cmd}
    for i in range(workers):
        port_i = worker_metrics_base_port + i if worker_metrics_base_port else 0
        commands[f"worker-{i}"] = [
            *base,
            "worker",
            "--concurrency",
            str(concurrency),
            "--metrics-port",
            str(port_i),
        ]
    procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
    stopping = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pidfile = settings.home / "up.json"
    try:
        while not stopping:
            _write_pids(pidfile, procs)
            for name, proc in list(procs.items()):
                if proc.poll() is not None and not stopping:
                    err_console.print(f"{name} exited with {proc.returncode}; restarting")
                    procs[name] = subprocess.Popen(commands[name], env=env)
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + settings.lease_seconds
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pidfile.unlink(missing_ok=True)


def _write_pids(path: os.PathLike[str], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    data = {name: proc.pid for name, proc in procs.items()}
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
