"""Every file of the shared corpus ends as its MANIFEST `expect` column says, through the real
CLI (`docingest ingest --json`) on a real Postgres; ingesting it again changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docingest.ops.validation.corpus_manifest import check_outcome, read_manifest
from tests.conftest import CORPUS
from tests.e2e.conftest import stack_env
from tests.helpers import counts

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not (CORPUS / "MANIFEST.tsv").exists(), reason=f"corpus not found at {CORPUS}"
    ),
]


def _ingest(dsn: str, home: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "docingest", "ingest", "--json", "--concurrency", "2", str(CORPUS)],
        env=stack_env(dsn, home),
        capture_output=True,
        timeout=900,
        check=False,
    )
    assert proc.stdout, proc.stderr.decode()[-2000:]
    docs = json.loads(proc.stdout)["documents"]
    return proc.returncode, {str(Path(d["path"]).relative_to(CORPUS)): d for d in docs}


def _problem(expect: str, doc: dict[str, Any]) -> str | None:
    return check_outcome(expect, doc["status"], doc["error"], doc["chunks"], doc["vectors"])


def test_corpus_ends_as_manifest_says_and_reingest_is_a_no_op(dsn: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, docs = _ingest(dsn, home)
    rows = read_manifest(CORPUS)
    assert len(docs) == len(rows)
    problems = {r.name: p for r in rows if (p := _problem(r.expect, docs[r.name]))}
    assert problems == {}
    assert code == 1  # some documents are expected to fail
    before = counts(dsn)
    code2, docs2 = _ingest(dsn, home)
    assert code2 == code
    assert {k: (d["document_id"], d["status"]) for k, d in docs2.items()} == {
        k: (d["document_id"], d["status"]) for k, d in docs.items()
    }
    assert counts(dsn) == before
