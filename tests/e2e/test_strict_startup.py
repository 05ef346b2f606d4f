"""Strict start-up: a missing or malformed setting stops `docingest api` / `worker` with exit
code 2 and one stderr line naming the variable, before anything starts: no embedded database,
no key or secret file (DOCINGEST_HOME is never even created)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli

CASES = [
    ("api", {"DOCINGEST_EMBED_DIMENSIONS": "abc"}, "DOCINGEST_EMBED_DIMENSIONS"),
    ("worker", {"DOCINGEST_PARSER": "bogus"}, "DOCINGEST_PARSER"),
    ("api", {"DOCINGEST_EMBEDDER": "openai"}, "DOCINGEST_OPENAI_API_KEY"),
    ("worker", {"DOCINGEST_LEASE_SECONDS": "-1"}, "DOCINGEST_LEASE_SECONDS"),
    ("worker", {"DOCINGEST_MASTER_KEY": "too-short"}, "DOCINGEST_MASTER_KEY"),
    ("api", {"DOCINGEST_DATABASE_URL": "mysql://db/docingest"}, "DOCINGEST_DATABASE_URL"),
    (
        "worker",
        {
            "DOCINGEST_EMBEDDER": "openai",
            "DOCINGEST_OPENAI_API_KEY": "sk-test",
            "DOCINGEST_OPENAI_BASE_URL": "http://embeddings.example.com/v1",
        },
        "DOCINGEST_OPENAI_BASE_URL",
    ),
]


@pytest.mark.parametrize(("command", "bad", "variable"), CASES)
def test_bad_setting_stops_start_up_with_one_line(
    command: str, bad: dict[str, str], variable: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCINGEST_", "OPENAI_"))}
    env.update(DOCINGEST_HOME=str(home), **bad)
    result = run_cli(env, command, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ") and variable in lines[0]
    assert result.stdout == ""
    assert not home.exists()  # nothing was started or created
