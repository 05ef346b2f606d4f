"""`docingest validate --quick` is itself a test (issue 4): a fresh stack with faults, the
corpus pushed through it, every target holding, and a report whose numbers are numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from docingest.ops.validation.corpus_manifest import must_fail, read_manifest
from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.tsv").exists(), reason=f"corpus not found at {CORPUS}"
)

# every probe issue 4 names, plus one per hostile file that must fail (added below)
NAMED = {
    "callback.forged",
    "callback.stale",
    "callback.altered_body",
    "callback.replayed",
    "callback.rotated_key",
    "callback.mismatched_ids",
    "callback.artifact_mismatch",
    "hint.missing_token",
    "hint.wrong_token",
    "cross_user.read_document",
    "cross_user.read_job",
    "cross_user.read_job_by_document",
    "cross_user.delete_document",
    "cross_user.retry_job",
    "cross_user.retry_by_document",
    "cross_user.advance_non_admin",
    "cross_user.search",
    "cross_user.list",
    "token.bad_signature",
    "token.expired",
    "token.alg_none",
    "token.missing_exp",
    "token.missing",
    "token.malformed_header",
    "input.not_pdf",
    "input.empty",
    "input.oversized_declared",
    "input.oversized_streamed",
    "input.hostile_isolation",
}


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
    hostile = {
        f"input.{Path(f.name).stem}"
        for f in read_manifest(CORPUS)
        if f.name.startswith("hostile/") and must_fail(f.expect)
    }
    assert len(hostile) >= 5 and NAMED | hostile <= set(sec["names"])
    assert len(sec["names"]) == len(set(sec["names"]))
    for plot in ("scaling.png", "status_latency.png", "predictability.png", "recovery.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    assert "PASS" in (out / "report.md").read_text()
