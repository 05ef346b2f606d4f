"""Long-running processes: `api`, `worker`, and `up` (API + N workers, one command)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Annotated

import prometheus_client
import typer
import uvicorn

from docingest import bootstrap
from docingest.cli.common import build_runtime, config_errors_exit, err_console, load_settings


def api(
    host: Annotated[
        str, typer.Option(envvar="DOCINGEST_API_HOST", help="Interface to bind.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DOCINGEST_API_PORT", help="Port to bind.")] = 8000,
) -> None:
    """Run the HTTP API (FastAPI + uvicorn)."""
    settings = load_settings(log_format="json")
    rt = build_runtime(settings)
    from docingest.api.main import create_app

    uvicorn.run(create_app(rt), host=host, port=port, log_level="warning", access_log=False)


def worker(
    concurrency: Annotated[
        int,
        typer.Option(
            envvar="DOCINGEST_WORKER_CONCURRENCY", min=1, help="Async job slots in this process."
        ),
    ] = 2,
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
) -> None:
    """Run one worker process (claims jobs from Postgres; SIGTERM finishes or releases work)."""
    settings = load_settings(log_format="json")
    rt = build_runtime(settings)
    from docingest.worker.runner import run_worker

    if metrics_port:
        # a daemon thread serving this process's registry (worker/metrics.py)
        prometheus_client.start_http_server(metrics_port, addr=metrics_host)
    asyncio.run(run_worker(rt, concurrency=concurrency, once=once))


def up(
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to start.")] = 2,
    port: Annotated[int, typer.Option(envvar="DOCINGEST_API_PORT", help="API port.")] = 8000,
    host: Annotated[str, typer.Option(envvar="DOCINGEST_API_HOST")] = "127.0.0.1",
    concurrency: Annotated[int, typer.Option(min=1, help="Slots per worker process.")] = 2,
) -> None:
    """API + N worker processes on one database; restarts a worker that dies."""
    settings = load_settings(log_format="json")
    with config_errors_exit():
        dsn = bootstrap.database_url(settings)  # starts the embedded server when no URL is set
        bootstrap.jwt_secret(settings)
        bootstrap.webhook_secret(settings)
        bootstrap.blob_store(settings)  # creates the master key file once, before children race
    env = {**os.environ, "DOCINGEST_DATABASE_URL": dsn, "DOCINGEST_HOME": str(settings.home)}
    base = [sys.executable, "-m", "docingest"]
    api_cmd = [*base, "api", "--host", host, "--port", str(port)]
    worker_cmd = [*base, "worker", "--concurrency", str(concurrency)]
    procs: dict[str, subprocess.Popen[bytes]] = {"api": subprocess.Popen(api_cmd, env=env)}
    for i in range(workers):
        procs[f"worker-{i}"] = subprocess.Popen(worker_cmd, env=env)
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
                    procs[name] = subprocess.Popen(
                        api_cmd if name == "api" else worker_cmd, env=env
                    )
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
