"""The security probes of `docingest validate` against a real stack: the fake LlamaParse in
callback mode and `docingest up` (API + 2 workers, hash embedder) as processes on loopback,
a fresh Postgres. Every probe must pass, and every probe the issue names must have run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from docingest.ops.validation.corpus_manifest import must_fail, read_manifest
from docingest.ops.validation.probes import ProbeTarget, run_probes
from tests.conftest import CORPUS, EXAMPLES
from tests.e2e.conftest import JWT_SECRET, WEBHOOK_SECRET, llamaparse_up, start_fake_llamaparse

MAX_UPLOAD = 4 << 20

pytestmark = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.tsv").exists(), reason=f"corpus not found at {CORPUS}"
)

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


def test_every_security_probe_passes(dsn: str, tmp_path: Path) -> None:
    hostile = {
        f"input.{Path(f.name).stem}"
        for f in read_manifest(CORPUS)
        if f.name.startswith("hostile/") and must_fail(f.expect)
    }
    with (
        start_fake_llamaparse() as fake,
        llamaparse_up(
            dsn,
            tmp_path / "home",
            fake,
            workers=2,
            env={"DOCINGEST_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)},
        ) as api,
    ):
        target = ProbeTarget(
            api_url=api,
            jwt_secret=JWT_SECRET,
            webhook_secret=WEBHOOK_SECRET,
            corpus_dir=CORPUS,
            sample_pdf=EXAMPLES / "glossary_cms_uniform_health_coverage.pdf",
            max_upload_bytes=MAX_UPLOAD,
            fake_llamaparse_url=fake,
        )
        started = time.monotonic()
        results = run_probes(target, terminal_timeout_s=120)
        elapsed = time.monotonic() - started
    failed = {r.name: r.detail for r in results if not r.passed}
    assert failed == {}
    names = [r.name for r in results]
    assert len(names) == len(set(names)) >= 20
    assert NAMED | hostile <= set(names), sorted(NAMED | hostile - set(names))
    assert len(hostile) >= 5  # encrypted, no text, zero pages, not a PDF
    print(f"{len(results)} probes in {elapsed:.1f} s")
