"""`--embed-version-map`: 001 vectors carried under docingest's version label are searched and
reused by the configured embedder (docs/migration-001.md)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import psycopg

from docingest.ops import migrate_001
from docingest.pipeline import hashing
from docingest.pipeline.hash_embedding import hash_embed
from docingest.pipeline.stored_vector import as_stored
from docingest.store.db import open_pool
from docingest.store.search import SearchMode, search
from docingest.testing.legacy001 import (
    DIMENSIONS,
    MODEL,
    OTHER_MODEL,
    VERSION,
    Legacy001,
    LegacyChunkSpec,
)
from docingest.worker.runner import run_worker
from tests.helpers import CountingEmbedder, make_runtime
from tests.legacy_fixtures import legacy_dsn

__all__ = ["legacy_dsn"]  # the fixture, used by name

LEGACY_VERSION = "1"  # how 001 labels its vectors


def _texts(tag: str) -> list[str]:
    return [f"{tag} section {i}: the copay is {10 * (i + 1)} dollars." for i in range(3)]


async def test_mapped_vectors_are_searched_and_reused_under_the_configured_version(
    legacy_dsn: str, dsn: str, tmp_path: Path
) -> None:
    legacy_label = (MODEL, LEGACY_VERSION)
    legacy = Legacy001(legacy_dsn)
    try:
        done = legacy.document(
            jobs=[("embedded", "done")],
            chunks=[LegacyChunkSpec(t, model=legacy_label) for t in _texts("done")],
        )
        specs = [LegacyChunkSpec(t, model=legacy_label) for t in _texts("partial")]
        specs[-1] = LegacyChunkSpec(specs[-1].text, model=OTHER_MODEL)
        partial = legacy.document(jobs=[("embedding", "working")], chunks=specs)
    finally:
        legacy.close()
    options = migrate_001.Options(embed_versions={LEGACY_VERSION: VERSION})
    summary = await migrate_001.migrate(legacy_dsn, dsn, None, options)
    assert summary.by_status == {"complete": 1, "chunks_stored": 1}
    with psycopg.connect(dsn) as conn:
        promoted = conn.execute(
            "SELECT chunk_id, embed_model, embed_version, vector_sha FROM docingest.document_chunks"
            " WHERE document_id = %s",
            (done.document_id,),
        ).fetchall()
        job = conn.execute(
            "SELECT embed_model, embed_version FROM docingest.upload_jobs WHERE document_id = %s",
            (done.document_id,),
        ).fetchone()
    assert job == (MODEL, VERSION)
    assert {(r[0], r[1], r[2]) for r in promoted} == {(c, MODEL, VERSION) for c in done.chunk_ids}
    for cid, _, _, vsha in promoted:  # relabelled, not changed
        assert vsha == hashing.vector_sha(as_stored(done.vectors[cid]))

    rt = make_runtime(dsn, tmp_path / "home")
    async with await open_pool(dsn, max_size=2) as pool, pool.connection() as conn:
        hits = await search(
            conn,
            done.user_id,
            query=done.texts[1],
            query_vector=hash_embed(done.texts[1], DIMENSIONS),
            mode=SearchMode.VECTOR,
            model=MODEL,
            version=VERSION,
            k=1,
        )
    assert [h["chunk_id"] for h in hits] == [str(done.chunk_ids[1])]

    embedder = CountingEmbedder(DIMENSIONS)
    assert (embedder.model, embedder.version) == (MODEL, VERSION)
    assert (
        await run_worker(
            dataclasses.replace(rt, embedder=embedder), once=True, handle_signals=False
        )
        == 1
    )
    assert embedder.inputs == 1  # the two mapped vectors were reused; only OTHER_MODEL's chunk
    with psycopg.connect(dsn) as conn:
        status = conn.execute(
            "SELECT status FROM docingest.upload_jobs WHERE document_id = %s",
            (partial.document_id,),
        ).fetchone()
    assert status == ("complete",)


def test_cli_rejects_a_malformed_map() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "docingest",
            "migrate-001",
            "--from",
            "postgresql://unused",
            "--embed-version-map",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--embed-version-map" in proc.stderr and "OLD=NEW" in proc.stderr
