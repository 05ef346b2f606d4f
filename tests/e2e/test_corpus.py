"""Every file of the shared corpus ends as its MANIFEST `expect` column says, through the real
CLI (`docingest ingest --json`) on a real Postgres; ingesting it again changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, corpus_rows
from tests.e2e.conftest import stack_env
from tests.helpers import counts

TERMINAL = {"complete", "failed_parse", "failed_chunking", "failed_embedding"}

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


def _check(expect: str, doc: dict[str, Any]) -> str | None:
    status, error = doc["status"], doc["error"]
    if expect == "complete":
        ok = status == "complete" and doc["chunks"] == doc["vectors"] > 0
    elif expect.startswith("failed_parse:"):
        ok = (
            status == "failed_parse"
            and error is not None
            and error["code"] == expect.split(":", 1)[1]
        )
    elif expect == "failed_parse":
        ok = status == "failed_parse" and error is not None and bool(error["code"])
    elif expect == "rejected:415":
        ok = status == "rejected" and error is not None and error["code"] == "not_pdf"
    elif expect in ("any_terminal", "accepted:any_terminal"):
        ok = status in TERMINAL and (status == "complete" or bool(error and error["code"]))
    else:
        return f"unknown expectation {expect}"
    return None if ok else f"expected {expect}, got {status} {error}"


def test_corpus_ends_as_manifest_says_and_reingest_is_a_no_op(dsn: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, docs = _ingest(dsn, home)
    rows = corpus_rows()
    assert len(docs) == len(rows)
    problems = {r["file"]: p for r in rows if (p := _check(r["expect"], docs[r["file"]]))}
    assert problems == {}
    assert code == 1  # some documents are expected to fail
    before = counts(dsn)
    code2, docs2 = _ingest(dsn, home)
    assert code2 == code
    assert {k: (d["document_id"], d["status"]) for k, d in docs2.items()} == {
        k: (d["document_id"], d["status"]) for k, d in docs.items()
    }
    assert counts(dsn) == before
