"""The `docingest` entry point: the command runs, then what it built is frozen out of the
garbage collector before the interpreter's shutdown walks it (docingest.cli.main)."""

from __future__ import annotations

import gc
import sys
import tomllib
from pathlib import Path

import pytest

from docingest.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_main_runs_the_command_then_freezes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["docingest", "--help"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_console_script_and_python_m_use_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["docingest"] == "docingest.cli:main"
    assert "main()" in (ROOT / "src" / "docingest" / "__main__.py").read_text()
