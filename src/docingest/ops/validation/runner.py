"""Run every validation phase on one fresh stack and write the report.

A phase that raises is recorded with its error type and fails its targets; the run goes
on so that one broken phase never hides the others' numbers. Each phase may add rows to
the `faults` section (the evidence that its faults happened)."""

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

from docingest.ops.validation import (
    determinism,
    drill,
    predictability,
    recovery,
    reliability,
    report,
    scaling,
    targets,
)
from docingest.ops.validation.plan import Plan
from docingest.ops.validation.probe_kit import ProbeTarget
from docingest.ops.validation.probes import run_probes
from docingest.ops.validation.stack import Stack
from docingest.testing.pdfgen import make_pdf

REPO = Path(__file__).resolve().parents[4]  # where deploy/ is (a source checkout)


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
        with Stack(root) as stack:
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
        ("reliability", lambda: reliability.run(stack, plan, corpus)),
        ("security", lambda: _security(stack, corpus, sample_pdf)),
        ("determinism", lambda: determinism.determinism(stack)),
        ("predictability", lambda: predictability.run(stack, plan, corpus)),
        ("recovery", lambda: recovery.run(stack, plan)),
        ("scaling", lambda: scaling.run(stack, plan)),
        ("disaster_recovery", lambda: drill.run(stack, root / "backup", REPO)),
    ]
    result: dict[str, Any] = {"phase_seconds": {}, "faults": []}
    for name, phase in phases:
        progress(f"phase {name}")
        phase_t0 = time.monotonic()
        try:
            sections = phase()
        except Exception as exc:  # recorded; its targets then fail
            sections = {name: {"error": type(exc).__name__, "detail": str(exc)[:200]}}
        result["faults"] += sections.pop("faults", [])
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
            max_upload_bytes=stack.effective_settings().max_upload_bytes,
            fake_llamaparse_url=stack.llamaparse_url,
        )
    )
    return {
        "security": {
            "probes": len(results),
            "passed": sum(r.passed for r in results),
            "failed": [{"probe": r.name, "detail": r.detail} for r in results if not r.passed],
            "names": [r.name for r in results],
            "settings": stack.describe_settings(),
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
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgres": row["pg"],
        "pgvector": row["vec"],
        "settings": stack.describe_settings(),
    }


def _keep_logs(root: Path, out: Path) -> None:
    """Process logs (ids only) beside a failed report, for whoever has to explain it."""
    logs = root / "logs"
    if logs.exists():
        shutil.copytree(logs, out / "logs", dirs_exist_ok=True)
