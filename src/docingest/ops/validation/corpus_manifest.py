"""The shared corpus's MANIFEST.tsv and what each row's `expect` demands (corpus README):
one reading for the corpus test, the validation run and the security probes. Pure apart
from reading the manifest file itself.

`expect` values: `complete`, `failed_parse:CODE`, `failed_parse`, `rejected:415`,
`any_terminal`, `accepted:any_terminal`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from docingest.domain.states import TERMINAL

MANIFEST = "MANIFEST.tsv"
# A remote parser's failure is `parser_failed`, its own code in the message (worker/remote_parse)
_REMOTE_CODE = re.compile(r"\(error_code=([A-Za-z0-9_]+)\)")


@dataclass(frozen=True)
class CorpusFile:
    name: str  # path relative to the corpus directory, e.g. `hostile/page_tree_cycle.pdf`
    expect: str
    path: Path
    size: int
    pages: int | None  # None where MANIFEST has no page count (unreadable hostile files)


def read_manifest(corpus_dir: Path) -> list[CorpusFile]:
    """The rows of `corpus_dir/MANIFEST.tsv` (quoted fields allowed); [] when it is absent."""
    manifest = corpus_dir / MANIFEST
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        CorpusFile(
            r["file"],
            r["expect"],
            corpus_dir / r["file"],
            int(r["bytes"]),
            int(r["pages"]) if (r.get("pages") or "").isdigit() else None,
        )
        for r in rows
        if r.get("file")
    ]


def should_complete(expect: str) -> bool:
    return expect == "complete"


def must_fail(expect: str) -> bool:
    """Refused at upload or ended in `failed_parse`, whatever the parser makes of it."""
    return expect.startswith(("failed_parse", "rejected:"))


def error_code(error: Mapping[str, object] | None) -> str | None:
    """The code that judges a failure: a remote parser's own code (lower-cased) when the job
    failed as `parser_failed`, which is how the LlamaParse path reports a file it could not
    parse; otherwise the job's code."""
    if not error:
        return None
    code = error.get("code")
    message = error.get("message")
    if code == "parser_failed" and isinstance(message, str):
        found = _REMOTE_CODE.search(message)
        if found:
            return found.group(1).lower()
    return code if isinstance(code, str) else None


def check_outcome(
    expect: str,
    status: str,
    error: Mapping[str, object] | None,
    chunks: int = 0,
    vectors: int = 0,
) -> str | None:
    """None when the outcome is what `expect` demands, else a short reason (codes only).

    `status` is a job status, or `rejected` for an upload the API refused; `error` is the
    job's `last_error` (or the upload's error body) `{code, message}`."""
    code = error_code(error)
    if expect == "complete":
        ok = status == "complete" and chunks == vectors > 0
    elif expect.startswith("failed_parse:"):
        ok = status == "failed_parse" and code == expect.split(":", 1)[1]
    elif expect == "failed_parse":
        ok = status == "failed_parse" and bool(code)
    elif expect == "rejected:415":
        ok = status == "rejected" and code == "not_pdf"
    elif expect in ("any_terminal", "accepted:any_terminal"):
        ok = status in TERMINAL and (status == "complete" or bool(code))
    else:
        return f"unknown expectation {expect}"
    return None if ok else f"expected {expect}, got {status} {code}"
