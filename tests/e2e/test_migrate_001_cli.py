"""The cut-over as an operator runs it (docs/migration-001.md): dry run, migrate with the
bucket export, compare in parallel, roll back — each a real `docingest` process."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from docingest.clients.local_parser import LocalParser
from docingest.ops.compare_001 import reprocess
from docingest.testing.legacy001 import DIMENSIONS, Legacy001, LegacyChunkSpec, checksum
from tests.conftest import EXAMPLES
from tests.e2e.conftest import run_cli, stack_env
from tests.helpers import CountingEmbedder
from tests.legacy_fixtures import legacy_dsn

__all__ = ["legacy_dsn"]  # the fixture, used by name

PDFS = [EXAMPLES / "glossary_cms_uniform_health_coverage.pdf", EXAMPLES / "sbc_uhc_bronze_2026.pdf"]
TABLES = ("documents", "upload_jobs", "document_chunk_buffer", "document_chunks")


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM docingest.{t}").fetchone()[0]  # type: ignore[index]
            for t in TABLES
        }


async def test_dry_run_migrate_compare_rollback(legacy_dsn: str, dsn: str, tmp_path: Path) -> None:
    export = tmp_path / "export"
    legacy = Legacy001(legacy_dsn, export_dir=export)
    parser, embedder = LocalParser(), CountingEmbedder(DIMENSIONS)
    try:
        written = []
        for i, pdf in enumerate(PDFS):
            raw = pdf.read_bytes()
            shadow = await reprocess(raw, parser, embedder)
            texts = list(shadow.texts)
            if i == 1:  # 001 stored something else for chunk 1 (with a matching chunk_sha)
                texts[1] = "Rider 7 replaces this section: appeals go to the state board."
            written.append(
                legacy.document(
                    jobs=[("embedded", "done")],
                    raw=raw,
                    chunks=[LegacyChunkSpec(t) for t in texts],
                )
            )
        legacy.document(jobs=[("chunking", "deadletter")])
        stray = legacy.job(legacy.document(jobs=[("parsed", "done")]).document_id, "bogus", "done")
    finally:
        legacy.close()
    env = stack_env(
        dsn,
        tmp_path / "home",
        DOCINGEST_EMBEDDER="hash",
        DOCINGEST_EMBED_DIMENSIONS=str(DIMENSIONS),
        DOCINGEST_PARSER="local",
    )
    before_001 = checksum(legacy_dsn)

    dry = run_cli(env, "migrate-001", "--from", legacy_dsn, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert set(plan) == {"batch", "documents", "by_status", "problems"}
    assert plan["documents"] == 4
    assert plan["by_status"] == {"complete": 2, "failed_chunking": 1, "parsed": 1}
    assert any(
        p["id"] == str(stray) and p["reason"].startswith("unknown_stage") for p in plan["problems"]
    )
    assert _counts(dsn) == dict.fromkeys(TABLES, 0)

    run = run_cli(env, "migrate-001", "--from", legacy_dsn, "--blobs-from", str(export), "--json")
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout)
    assert done["by_status"] == plan["by_status"] and done["batch"] != plan["batch"]
    assert not any(p["reason"].startswith("blobs_not_copied") for p in done["problems"])
    assert _counts(dsn)["documents"] == 4 and _counts(dsn)["document_chunks"] > 0

    cmp = run_cli(env, "compare-001", "--from", legacy_dsn, "--sample", "10", "--json")
    assert cmp.returncode == 1, cmp.stderr  # one document differs
    verdicts = {d["document_id"]: d for d in json.loads(cmp.stdout)["documents"]}
    good, bad = verdicts[str(written[0].document_id)], verdicts[str(written[1].document_id)]
    assert good["verdict"] == "pass" and good["min_cosine"] > 0.999, good
    assert good["chunks_001"] == good["chunks_002"] > 0
    assert bad["verdict"] == "fail"
    assert "chunk 1: text differs" in bad["reasons"]
    assert any(r.startswith("chunk 1: cosine") for r in bad["reasons"])
    assert _counts(dsn)["document_chunks"] == sum(len(w.chunk_ids) for w in written)

    back = run_cli(env, "migrate-001", "rollback", "--batch", done["batch"])
    assert back.returncode == 0, back.stderr
    assert _counts(dsn) == dict.fromkeys(TABLES, 0)
    assert checksum(legacy_dsn) == before_001
    again = run_cli(env, "migrate-001", "rollback", "--batch", done["batch"])
    assert again.returncode == 1
