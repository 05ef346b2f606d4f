"""The migration's two write paths: rows of documents inserted by this run are COPYed
straight into the docingest tables, rows of documents already there go through staging and
`ON CONFLICT DO NOTHING`; and a 001 database without its primary key on chunks."""

from __future__ import annotations

import psycopg

from docingest.ops import migrate_001
from docingest.pipeline import hashing
from docingest.pipeline.stored_vector import as_stored
from docingest.testing.legacy001 import Legacy001, LegacyChunkSpec
from tests.legacy_fixtures import legacy_dsn

__all__ = ["legacy_dsn"]  # the fixture, used by name


def _specs(tag: str) -> list[LegacyChunkSpec]:
    return [LegacyChunkSpec(f"{tag} part {i}: out-of-pocket maximum {i} dollars") for i in range(3)]


def _rows(dsn: str) -> dict[str, set[tuple[object, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {
            "chunks": set(
                conn.execute(
                    "SELECT chunk_id, document_id, chunk_sha, embed_version, vector_sha,"
                    " migration_batch FROM docingest.document_chunks"
                ).fetchall()
            ),
            "buffered": set(
                conn.execute(
                    "SELECT chunk_id, migration_batch FROM docingest.document_chunk_buffer"
                ).fetchall()
            ),
        }


async def test_a_later_run_adds_new_documents_and_leaves_existing_ones(
    legacy_dsn: str, dsn: str
) -> None:
    legacy = Legacy001(legacy_dsn)
    try:
        first = legacy.document(jobs=[("embedded", "done")], chunks=_specs("first"))
    finally:
        legacy.close()
    one = await migrate_001.migrate(legacy_dsn, dsn, None, migrate_001.Options())
    before = _rows(dsn)
    assert len(before["chunks"]) == 3
    legacy = Legacy001(legacy_dsn)
    try:
        later = legacy.document(jobs=[("embedded", "done")], chunks=_specs("later"))
        buffered = legacy.document(jobs=[("embedded", "queued")], chunks=_specs("buffered"))
    finally:
        legacy.close()
    two = await migrate_001.migrate(legacy_dsn, dsn, None, migrate_001.Options())
    assert two.committed and two.written["documents"] == 2
    assert two.written["document_chunks"] == 3 and two.written["document_chunk_buffer"] == 3
    after = _rows(dsn)
    assert before["chunks"] <= after["chunks"]  # the first batch's rows untouched
    new = after["chunks"] - before["chunks"]
    assert {r[1] for r in new} == {later.document_id}
    assert {r[5] for r in new} == {two.batch} and {r[5] for r in before["chunks"]} == {one.batch}
    for cid, _, sha, _, vsha, _ in new:
        i = later.chunk_ids.index(cid)
        assert sha == hashing.chunk_sha(later.texts[i])
        assert vsha == hashing.vector_sha(as_stored(later.vectors[cid]))
    assert after["buffered"] == {(c, two.batch) for c in buffered.chunk_ids}
    assert first.document_id not in {r[1] for r in new}


async def test_a_duplicated_chunk_row_is_reported_and_carried_once(
    legacy_dsn: str, dsn: str
) -> None:
    legacy = Legacy001(legacy_dsn)
    try:
        doc = legacy.document(jobs=[("embedded", "done")], chunks=_specs("dup"))
    finally:
        legacy.close()
    with psycopg.connect(legacy_dsn, autocommit=True) as conn:
        keys = conn.execute(
            "SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u')"
            " AND conrelid = 'upload_pipeline.document_chunks'::regclass"
        ).fetchall()
        assert len(keys) == 2  # the primary key and the (document, chunker, ord) key
        for (name,) in keys:
            conn.execute(f'ALTER TABLE upload_pipeline.document_chunks DROP CONSTRAINT "{name}"')
        conn.execute(
            "INSERT INTO upload_pipeline.document_chunks SELECT * FROM"
            " upload_pipeline.document_chunks WHERE chunk_id = %s",
            (doc.chunk_ids[1],),
        )
    summary = await migrate_001.migrate(legacy_dsn, dsn, None, migrate_001.Options())
    assert summary.committed and summary.by_status == {"complete": 1}
    assert [p.id for p in summary.problems if p.reason.startswith("duplicate_chunk")] == [
        str(doc.chunk_ids[1])
    ]
    assert {r[0] for r in _rows(dsn)["chunks"]} == set(doc.chunk_ids)
