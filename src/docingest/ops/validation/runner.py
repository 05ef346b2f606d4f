"""Run every validation phase on one fresh stack and write the report.

A phase that raises is recorded with its error type and fails its targets; the run goes
on so that one broken phase never hides the others' numbers.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docingest.ops.validation import determinism, drill, report, scenarios, targets
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.probes import ProbeTarget, run_probes
from docingest.ops.validation.stack import Stack, StackSettings
from docingest.testing.pdfgen import make_pdf

FAULTS = (
    "parser: 2 upload 429s, 1 upload 500, 1 dropped callback (reconciler), 3 duplicated and"
    " 2 reordered callbacks during the reliability run",
    "embedder: 3 429s and 2 500s during the reliability run",
    "worker SIGKILL while it holds an embedding job (a fresh worker is started at once)",
    "PostgreSQL immediate shutdown and restart while jobs are claimed",
    "parser outage (every call 503) and embedder outage (every call 500) of outage_length_s",
    "disaster: backup while workers embed, then schema, vector extension and blobs destroyed",
)


def run(
    plan: Plan,
    out: Path,
    corpus: Path,
    *,
    command: str,
    progress: Callable[[str], None] = lambda _msg: None,
) -> tuple[dict[str, Any], list[targets.Verdict]]:
    started, t0 = datetime.now(UTC), time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="docingest-validate-"))
    try:
        with Stack(root, StackSettings()) as stack:
            progress("starting the stack")
            stack.start(workers=plan.reliability_workers)
            result = _phases(stack, plan, corpus, root, progress)
            result["meta"] = _meta(stack, plan, started, command)
        result["meta"]["duration_s"] = round(time.monotonic() - t0, 1)
        verdicts = targets.evaluate(result)
        report.write(out, result, verdicts)
        if not all(v.passed for v in verdicts):
            _keep_logs(root, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result, verdicts


def _phases(
    stack: Stack, plan: Plan, corpus: Path, root: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    sample_pdf = root / "sample.pdf"
    sample_pdf.write_bytes(make_pdf(seed=42))
    phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("reliability", lambda: scenarios.reliability(stack, plan, corpus)),
        ("security", lambda: _security(stack, corpus, sample_pdf)),
        ("determinism", lambda: determinism.determinism(stack)),
        ("predictability", lambda: scenarios.predictability(stack, plan)),
        ("recovery", lambda: scenarios.recovery(stack, plan)),
        ("scaling", lambda: scenarios.scaling(stack, plan)),
        ("disaster_recovery", lambda: drill.disaster_recovery(stack, root / "backup")),
    ]
    result: dict[str, Any] = {"phase_seconds": {}}
    for name, phase in phases:
        progress(f"phase {name}")
        phase_t0 = time.monotonic()
        try:
            sections = phase()
        except Exception as exc:  # recorded; its targets then fail
            sections = {name: {"error": type(exc).__name__, "detail": str(exc)[:200]}}
        result.update(sections)
        result["phase_seconds"][name] = round(time.monotonic() - phase_t0, 1)
    return result


def _security(stack: Stack, corpus: Path, sample_pdf: Path) -> dict[str, Any]:
    results = run_probes(
        ProbeTarget(
            api_url=stack.api_url,
            jwt_secret=stack.jwt_secret,
            webhook_secret=stack.webhook_secret,
            corpus_dir=corpus,
            sample_pdf=sample_pdf,
            max_upload_bytes=stack.settings.max_upload_bytes,
            fake_llamaparse_url=stack.llamaparse_url,
        )
    )
    return {
        "security": {
            "probes": len(results),
            "passed": sum(r.passed for r in results),
            "failed": [{"probe": r.name, "detail": r.detail} for r in results if not r.passed],
            "names": [r.name for r in results],
        }
    }


def _meta(stack: Stack, plan: Plan, started: datetime, command: str) -> dict[str, Any]:
    [row] = stack.query(
        "SELECT current_setting('server_version') AS pg,"
        " (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vec"
    )
    return {
        "plan": plan.name,
        "command": command,
        "started_at": started.isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": row["pg"],
        "pgvector": row["vec"],
        "lease_seconds": stack.settings.lease_seconds,
        "faults": list(FAULTS),
    }


def _keep_logs(root: Path, out: Path) -> None:
    """Process logs (ids only) beside a failed report, for whoever has to explain it."""
    logs = root / "logs"
    if logs.exists():
        shutil.copytree(logs, out / "logs", dirs_exist_ok=True)
