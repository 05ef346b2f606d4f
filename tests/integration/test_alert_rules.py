"""deploy/prometheus/alerts.yml: valid, unit-tested with `promtool test rules`, and written
against metric names the code really exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
SRC = ROOT / "src" / "docingest"


def _promtool() -> str:
    """promtool from PATH, else Debian's `prometheus` package when we may install it."""
    found = shutil.which("promtool")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "prometheus"]):
            done = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
            if done.returncode != 0:
                break
        found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not on PATH and Debian's prometheus package could not be installed"
        )
    return found


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_their_promtool_unit_tests() -> None:
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", "alerts.yml", cwd=RULES_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts_test.yml", cwd=RULES_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = (RULES_DIR / "alerts.yml").read_text(encoding="utf-8")
    threshold = "docingest_queue_oldest_claimable_age_seconds) > 300"
    assert threshold in rules
    loosened = rules.replace(threshold, threshold.replace("300", "500"))
    (tmp_path / "alerts.yml").write_text(loosened, encoding="utf-8")
    shutil.copy(RULES_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = _run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "DocingestQueueStalled" in tested.stdout + tested.stderr


def test_rules_use_only_metrics_the_code_exports() -> None:
    rules = (RULES_DIR / "alerts.yml").read_text(encoding="utf-8")
    exprs = " ".join(re.findall(r"expr:\s*(\|[^\n]*\n(?:\s{10,}[^\n]*\n)+|[^\n]+)", rules))
    used = set(re.findall(r"docingest_[a-z_]+", exprs))
    assert len(used) >= 7
    source = "\n".join(p.read_text(encoding="utf-8") for p in SRC.rglob("*.py"))
    missing = sorted(name for name in used if f'"{name}"' not in source)
    assert missing == []
