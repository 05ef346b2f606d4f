"""`docingest validate --quick` is itself a test (issue 4): a fresh stack with faults, the
corpus pushed through it, every target holding, and a report whose numbers are numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.tsv").exists(), reason=f"corpus not found at {CORPUS}"
)


def test_validate_quick_passes_and_reports_every_field(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "docingest", "validate", "--quick"),
            *("--out", str(out), "--corpus", str(CORPUS)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = json.loads((out / "report.json").read_text())
    failed = [t for t in report["targets"] if not t["passed"]]
    assert proc.returncode == 0, (failed, proc.stderr[-3000:])
    assert report["passed"] is True and failed == []

    rel = report["reliability"]
    assert rel["documents"] > 20 and rel["completed"] == rel["documents"]
    assert rel["success_rate"] == 1.0 and rel["lost"] == 0 and rel["duplicated"] == 0
    for key in ("worker_kill_s", "postgres_restart_s", "parser_outage_s", "embedder_outage_s"):
        assert 0 <= report["recovery"][key] < 60
    assert 0 <= report["predictability"]["cv"] < 0.10
    scaling = report["scaling"]
    assert scaling["workers"] == [1, 2, 4, 8]
    assert len(scaling["docs_per_min"]) == 4 and scaling["efficiency"][0] == 1.0
    assert report["embedding"]["requests_per_1000_chunks"] > 0
    assert 0 < report["embedding"]["batch_fill"] <= 1
    assert report["status_latency_ms"]["p50"] <= report["status_latency_ms"]["p99"]
    sec = report["security"]
    assert sec["probes"] >= 20 and sec["passed"] == sec["probes"]
    for plot in ("scaling.png", "status_latency.png", "predictability.png", "recovery.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    assert "PASS" in (out / "report.md").read_text()
