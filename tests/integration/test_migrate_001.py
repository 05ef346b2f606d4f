"""The 001 -> 002 migration against a real 001 database on the test server: every row of the
MAPPING.md table, its integrity checks, dry run, rerun, rollback, problems by id, and a
migrated `chunks_stored` document finished by the BaseWorker."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from docingest.ops import migrate_001, rollback
from docingest.ops.blob_import import export_path
from docingest.pipeline import hashing, ids
from docingest.pipeline.stored_vector import as_stored
from docingest.store.blobs import LocalBlobStore
from docingest.store.keys import MasterKey
from docingest.testing.legacy001 import (
    DIMENSIONS,
    MODEL,
    OTHER_MODEL,
    VERSION,
    Legacy001,
    LegacyChunkSpec,
    Written,
    checksum,
)
from docingest.worker.runner import run_worker
from tests.helpers import CountingEmbedder, make_runtime
from tests.legacy_fixtures import legacy_dsn

__all__ = ["legacy_dsn"]  # the fixture, used by name

PENDING = ("queued", "working", "retryable")


def _texts(tag: str, n: int = 3) -> list[str]:
    return [f"{tag} section {i}: the deductible is {100 * (i + 1)} dollars." for i in range(n)]


def _chunks(kind: str, tag: str) -> list[LegacyChunkSpec]:
    if kind == "none":
        return []
    specs = [LegacyChunkSpec(t) for t in _texts(tag)]
    if kind == "partial":  # the last chunk's only vector is of another model
        specs[-1] = LegacyChunkSpec(specs[-1].text, model=OTHER_MODEL)
    return specs


# MAPPING.md, row by row: (stages, parsed artifact recorded, chunks, {state: 002 status})
MAPPING_ROWS: list[tuple[tuple[str, ...], bool, str, dict[str, str]]] = [
    (
        ("queued", "job_validated", "parsing"),
        True,
        "none",
        {"done": "parse_queued", "pending": "parse_queued", "deadletter": "failed_parse"},
    ),
    (
        ("parsed",),
        True,
        "none",
        {"done": "parsed", "pending": "parsed", "deadletter": "failed_parse"},
    ),
    (
        ("parsed",),
        False,
        "none",
        {"done": "parse_queued", "pending": "parse_queued", "deadletter": "failed_parse"},
    ),
    (
        ("parse_validated",),
        True,
        "none",
        {"done": "parse_validated", "pending": "parse_validated", "deadletter": "failed_parse"},
    ),
    (
        ("parse_validated",),
        False,
        "none",
        {"done": "parse_queued", "pending": "parse_queued", "deadletter": "failed_parse"},
    ),
    (
        ("chunking", "chunks_buffered", "chunked"),
        True,
        "none",
        {"done": "parse_validated", "pending": "parse_validated", "deadletter": "failed_chunking"},
    ),
    (
        ("chunking", "chunks_buffered", "chunked"),
        False,
        "none",
        {"done": "parse_queued", "pending": "parse_queued", "deadletter": "failed_chunking"},
    ),
    (
        ("embedding", "embeddings_buffered"),
        True,
        "full",
        {"done": "complete", "pending": "complete", "deadletter": "failed_embedding"},
    ),
    (
        ("embedding", "embeddings_buffered"),
        True,
        "partial",
        {"done": "chunks_stored", "pending": "chunks_stored", "deadletter": "failed_embedding"},
    ),
    (
        ("embedding", "embeddings_buffered"),
        True,
        "none",
        {"done": "parse_validated", "pending": "parse_validated", "deadletter": "failed_embedding"},
    ),
    (
        ("embedding", "embeddings_buffered"),
        False,
        "none",
        {"done": "parse_queued", "pending": "parse_queued", "deadletter": "failed_embedding"},
    ),
    (
        ("embedded",),
        True,
        "full",
        {"done": "complete", "pending": "embeddings_stored", "deadletter": "failed_embedding"},
    ),
    (
        ("embedded",),
        True,
        "partial",
        {"done": "chunks_stored", "pending": "chunks_stored", "deadletter": "failed_embedding"},
    ),
]
# where a failed_* job resumes (the normal 002 retry), by (status, parsed, chunks)
RESUME = {
    ("failed_parse", True, "none"): "parse_queued",
    ("failed_parse", False, "none"): "parse_queued",
    ("failed_chunking", True, "none"): "parse_validated",
    ("failed_chunking", False, "none"): "parse_queued",
    ("failed_embedding", True, "full"): "chunks_stored",
    ("failed_embedding", True, "partial"): "chunks_stored",
    ("failed_embedding", True, "none"): "parse_validated",
    ("failed_embedding", False, "none"): "parse_queued",
}


@dataclasses.dataclass
class Case:
    written: Written
    stage: str
    state: str
    parsed: bool
    chunks: str
    expected: str


def _build_mapping(legacy: Legacy001) -> list[Case]:
    cases = []
    for stages, parsed, chunks, outcome in MAPPING_ROWS:
        for stage in stages:
            for state in ("done", *PENDING, "deadletter"):
                expected = outcome["pending" if state in PENDING else state]
                # earlier stages finished first: the position is the most advanced one
                jobs = [("queued", "done")] if stage != "queued" else []
                error = (
                    {"code": "boom", "message": "legacy failure"} if state == "deadletter" else None
                )
                w = legacy.document(
                    jobs=[*jobs, (stage, state)],
                    parsed=parsed,
                    chunks=_chunks(chunks, f"{stage}-{state}-{chunks}"),
                    last_error=error,
                    retry_count=4 if error else 1,
                )
                cases.append(Case(w, stage, state, parsed, chunks, expected))
    return cases


@dataclasses.dataclass
class Broken:
    dangling: dict[str, uuid.UUID]
    wrong_dims: Written
    sha_mismatch: Written
    unknown_stage: Written
    unknown_job: uuid.UUID
    only_unknown: Written
    no_jobs: Written
    conflict: Written
    conflict_buffer: uuid.UUID
    pending_fill: Written
    tie: Written


def _build_broken(legacy: Legacy001) -> Broken:
    dangling = legacy.dangling_rows()
    wrong = legacy.document(
        jobs=[("embedded", "done")],
        chunks=[*_chunks("full", "wrongdims")[:2], LegacyChunkSpec("short vector", dims=768)],
    )
    sha = legacy.document(
        jobs=[("embedded", "done")],
        chunks=[*_chunks("full", "sha")[:2], LegacyChunkSpec("tampered", stored_sha="0" * 64)],
    )
    unknown = legacy.document(jobs=[("parsed", "done")])
    unknown_job = legacy.job(unknown.document_id, "reindexing", "queued", seq=5)
    only_unknown = legacy.document(jobs=[("reindexing", "done")])
    no_jobs = legacy.document()
    conflict = legacy.document(jobs=[("embedded", "done")], chunks=_chunks("full", "conflict"))
    other = np.roll(conflict.vectors[conflict.chunk_ids[0]], 1)
    conflict_buffer = legacy.pending(conflict.chunk_ids[0], other)
    fill = legacy.document(jobs=[("embedded", "done")], chunks=_chunks("partial", "fill"))
    last = fill.chunk_ids[-1]
    legacy.pending(last, _hash_vector(fill.texts[-1]))
    tie = legacy.document(
        jobs=[("embedded", "deadletter"), ("embedded", "done")], chunks=_chunks("full", "tie")
    )
    return Broken(
        dangling,
        wrong,
        sha,
        unknown,
        unknown_job,
        only_unknown,
        no_jobs,
        conflict,
        conflict_buffer,
        fill,
        tie,
    )


def _hash_vector(text: str) -> np.ndarray:
    from docingest.pipeline.hash_embedding import hash_embed

    return hash_embed(text, DIMENSIONS)


def _blobs(home: Path) -> LocalBlobStore:
    return LocalBlobStore(home / "blobs", MasterKey.generate())


async def _migrate(legacy_dsn: str, dsn: str, **kw: Any) -> migrate_001.Summary:
    blobs = kw.pop("blobs", None)
    return await migrate_001.migrate(legacy_dsn, dsn, blobs, migrate_001.Options(**kw))


def _jobs(dsn: str) -> dict[uuid.UUID, dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute(
            "SELECT j.*, d.file_sha256, d.user_id AS doc_user, d.raw_path AS doc_raw,"
            " (SELECT count(*) FROM docingest.document_chunks c WHERE c.document_id = j.document_id) AS promoted,"
            " (SELECT count(*) FROM docingest.document_chunk_buffer b WHERE b.document_id = j.document_id) AS buffered"
            " FROM docingest.upload_jobs j JOIN docingest.documents d USING (document_id)"
        ).fetchall()
    return {r["document_id"]: r for r in rows}


def _docingest_checksum(dsn: str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {t: v for t, v in checksum(dsn, "docingest").items() if t not in skip}


async def test_every_mapping_row_and_integrity(legacy_dsn: str, dsn: str, tmp_path: Path) -> None:
    legacy = Legacy001(legacy_dsn)
    try:
        cases = _build_mapping(legacy)
    finally:
        legacy.close()
    before_001 = checksum(legacy_dsn)
    summary = await _migrate(legacy_dsn, dsn)
    assert summary.committed and summary.documents == len(cases)
    jobs = _jobs(dsn)
    assert len(jobs) == len(cases)  # every document exactly once
    for case in cases:
        w, job = case.written, jobs[case.written.document_id]
        where = (case.stage, case.state, case.parsed, case.chunks)
        assert job["status"] == case.expected, where
        assert job["user_id"] == job["doc_user"] == w.user_id
        assert job["doc_raw"] == job["raw_path"] == f"storage://raw/{w.user_id}/{w.document_id}.pdf"
        assert job["job_id"] == w.job_ids[-1]  # the position row's id is kept
        if case.expected.startswith("failed_"):
            assert job["resume_status"] == RESUME[(case.expected, case.parsed, case.chunks)], where
            assert job["last_error"]["code"] == "boom" and job["retry_count"] == 4
        else:
            assert job["resume_status"] is None and job["retry_count"] == 1
        if case.expected in ("parsed", "parse_validated"):
            assert job["parsed_path"] == f"storage://parsed/{w.user_id}/{w.document_id}.md"
            assert job["parsed_sha256"] is not None
        carried = (
            0
            if case.expected
            in ("parse_queued", "parse_validated", "parsed", "failed_parse", "failed_chunking")
            or case.chunks == "none"
            else 3
        )
        if case.expected == "complete":
            assert (job["promoted"], job["buffered"]) == (3, 0), where
            assert (job["embed_model"], job["embed_version"]) == (MODEL, VERSION)
        else:
            assert (job["promoted"], job["buffered"]) == (0, carried), where
        assert job["progress"]["chunks_total"] == carried
    by_status: dict[str, int] = {}
    for case in cases:
        by_status[case.expected] = by_status.get(case.expected, 0) + 1
    assert summary.to_json()["by_status"] == dict(sorted(by_status.items()))
    _assert_carried_chunks_equal(legacy_dsn, dsn)
    assert checksum(legacy_dsn) == before_001


def _assert_carried_chunks_equal(legacy_dsn: str, dsn: str) -> None:
    """Every carried chunk: same id (recomputed from its key), same sha (recomputed from its
    text), and per model/version the same vector (hash of the float32 values) as in 001."""
    with psycopg.connect(legacy_dsn) as src, psycopg.connect(dsn) as dst:
        register_vector(src)
        register_vector(dst)
        # pending vectors first: where both exist, the live one is what 002 must hold
        old = {
            (r[0], r[1], r[2]): r[3]
            for r in src.execute(
                "SELECT chunk_id, embed_model, embed_version, embedding, 1 AS o"
                " FROM upload_pipeline.document_vector_buffer UNION ALL"
                " SELECT chunk_id, embed_model, embed_version, embedding, 2"
                " FROM upload_pipeline.document_chunks ORDER BY o"
            ).fetchall()
        }
        old_chunks = {
            r[0]: r[1:]
            for r in src.execute(
                "SELECT chunk_id, document_id, chunk_ord, text, chunk_sha FROM upload_pipeline.document_chunks"
            ).fetchall()
        }
        new = dst.execute(
            "SELECT chunk_id, document_id, chunker_name, chunker_version, chunk_ord, text,"
            " chunk_sha, embed_model, embed_version, embedding, vector_sha"
            " FROM docingest.document_chunks UNION ALL"
            " SELECT b.chunk_id, b.document_id, b.chunker_name, b.chunker_version, b.chunk_ord,"
            " b.text, b.chunk_sha, v.embed_model, v.embed_version, v.vector, v.vector_sha"
            " FROM docingest.document_chunk_buffer b"
            " JOIN docingest.document_vector_buffer v USING (chunk_id)"
        ).fetchall()
    assert new
    for cid, doc, name, version, ord_, text, sha, model, mversion, vec, vsha in new:
        assert cid == ids.chunk_id(doc, name, version, ord_)
        assert sha == hashing.chunk_sha(text) == old_chunks[cid][3]
        assert (doc, ord_, text) == old_chunks[cid][:3]
        source = old[(cid, model, mversion)].to_numpy()
        assert len(vec.to_numpy()) == len(source) == DIMENSIONS
        # stored as halfvec: the 001 vector rounded to float16, hashed as stored
        assert vsha == hashing.vector_sha(vec.to_numpy()) == hashing.vector_sha(as_stored(source))
        assert np.allclose(vec.to_numpy(), source, rtol=1e-3, atol=1e-4)


async def test_problems_are_reported_by_id_and_nothing_is_dropped(
    legacy_dsn: str, dsn: str
) -> None:
    legacy = Legacy001(legacy_dsn)
    try:
        b = _build_broken(legacy)
    finally:
        legacy.close()
    summary = await _migrate(legacy_dsn, dsn)
    reasons: dict[str, list[str]] = {}
    for p in summary.problems:
        reasons.setdefault(p.id, []).append(p.reason.split(":")[0])
    assert "dangling_reference" in reasons[str(b.dangling["job"])]
    assert "dangling_reference" in reasons[str(b.dangling["chunk"])]
    assert "dangling_reference" in reasons[str(b.dangling["buffer"])]
    assert reasons[str(b.wrong_dims.chunk_ids[2])] == ["wrong_dimensions"]
    assert reasons[str(b.sha_mismatch.chunk_ids[2])] == ["chunk_sha_mismatch"]
    assert "chunks_not_carried" in reasons[str(b.sha_mismatch.document_id)]
    assert reasons[str(b.unknown_job)] == ["unknown_stage"]
    assert "no_known_job" in reasons[str(b.only_unknown.document_id)]
    assert "no_known_job" in reasons[str(b.no_jobs.document_id)]
    assert reasons[str(b.conflict_buffer)] == ["pending_vector_conflict"]
    jobs = _jobs(dsn)
    status = {k: v["status"] for k, v in jobs.items()}
    # the chunk with a bad vector is carried without it: the worker embeds only that one
    assert status[b.wrong_dims.document_id] == "chunks_stored"
    assert jobs[b.wrong_dims.document_id]["buffered"] == 3
    assert status[b.sha_mismatch.document_id] == "parse_validated"
    assert status[b.unknown_stage.document_id] == "parsed"
    assert status[b.only_unknown.document_id] == status[b.no_jobs.document_id] == "parse_queued"
    assert status[b.conflict.document_id] == "complete"
    # a pending vector of the document's model completes it; the other model's vector stays
    assert status[b.pending_fill.document_id] == "complete"
    assert jobs[b.pending_fill.document_id]["promoted"] == 4
    assert status[b.tie.document_id] == "complete"  # same stage: the latest row wins
    # no 001 document is missing from 002
    with psycopg.connect(legacy_dsn) as src:
        n = src.execute("SELECT count(*) FROM upload_pipeline.documents").fetchone()
    assert n is not None and len(jobs) == n[0] == summary.documents
    _assert_carried_chunks_equal(legacy_dsn, dsn)
    out = summary.to_json()
    assert set(out) == {"batch", "documents", "by_status", "problems"}
    assert all(set(p) == {"id", "reason"} for p in out["problems"])


async def test_dry_run_writes_nothing_and_rerun_changes_nothing(
    legacy_dsn: str, dsn: str, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    legacy = Legacy001(legacy_dsn, export_dir=export)
    try:
        cases = _build_mapping(legacy)[:20]
        _build_broken(legacy)
    finally:
        legacy.close()
    blobs = _blobs(tmp_path)
    empty = _docingest_checksum(dsn)
    dry = await _migrate(legacy_dsn, dsn, dry_run=True, blobs_from=export, blobs=blobs)
    assert _docingest_checksum(dsn) == empty
    assert list(blobs.iter_keys()) == []
    assert not dry.committed and dry.written["documents"] > 0  # it did compute the writes
    real = await _migrate(legacy_dsn, dsn, blobs_from=export, blobs=blobs)
    assert real.committed
    assert real.to_json() | {"batch": ""} == dry.to_json() | {"batch": ""}
    after = _docingest_checksum(dsn)
    keys = sorted(blobs.iter_keys())
    assert keys and all(k.startswith(("raw/", "parsed/")) for k in keys)
    # files landed encrypted, verified against 001's sha256, and the rows point at them
    case = cases[0].written
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT raw_path, file_sha256 FROM docingest.documents WHERE document_id = %s",
            (case.document_id,),
        ).fetchone()
    assert row is not None and not row[0].startswith("storage://")
    plain = export_path(export, f"storage://raw/{case.user_id}/{case.document_id}.pdf")
    assert plain is not None
    assert await blobs.get_bytes(row[0], expected_sha256=row[1]) == plain.read_bytes()
    assert plain.read_bytes() not in (tmp_path / "blobs" / row[0]).read_bytes()
    again = await _migrate(legacy_dsn, dsn, blobs_from=export, blobs=blobs)
    assert not again.committed and not any(again.written.values())
    assert _docingest_checksum(dsn) == after
    assert sorted(blobs.iter_keys()) == keys


async def test_blob_export_checks_sha_and_late_copy(
    legacy_dsn: str, dsn: str, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    legacy = Legacy001(legacy_dsn, export_dir=export)
    try:
        good = legacy.document(jobs=[("parsed", "done")])
        bad = legacy.document(jobs=[("parsed", "done")])
    finally:
        legacy.close()
    tampered = export_path(export, f"storage://raw/{bad.user_id}/{bad.document_id}.pdf")
    assert tampered is not None
    tampered.write_bytes(b"%PDF-1.4 not what 001 recorded")
    first = await _migrate(legacy_dsn, dsn)  # no export: paths carried, reported
    assert {p.id for p in first.problems if p.reason.startswith("blobs_not_copied")} == {
        str(good.document_id),
        str(bad.document_id),
    }
    blobs = _blobs(tmp_path)
    second = await _migrate(legacy_dsn, dsn, blobs_from=export, blobs=blobs)
    assert [p.reason.split(":")[0] for p in second.problems if p.id == str(bad.document_id)] == [
        "raw blob_sha_mismatch"
    ]
    assert second.written["blob_paths_adopted"] == 2  # good: document + job rows
    jobs = _jobs(dsn)
    assert jobs[good.document_id]["raw_path"] == f"raw/{good.user_id}/{good.document_id}.pdf.enc"
    assert jobs[bad.document_id]["raw_path"].startswith("storage://")
    raw = await blobs.get_bytes(
        jobs[good.document_id]["raw_path"], expected_sha256=jobs[good.document_id]["file_sha256"]
    )
    assert hashlib.sha256(raw).hexdigest() == jobs[good.document_id]["file_sha256"]


async def test_rollback_removes_exactly_the_batch(
    legacy_dsn: str, dsn: str, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    legacy = Legacy001(legacy_dsn, export_dir=export)
    try:
        _build_mapping(legacy)
        _build_broken(legacy)
    finally:
        legacy.close()
    # a document docingest ingested itself must survive the rollback
    rt = make_runtime(dsn, tmp_path / "home")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
            " file_sha256, raw_path) VALUES (%s, %s, 'own.pdf', 1, %s, 'raw/own')",
            (uuid.uuid4(), uuid.uuid4(), "a" * 64),
        )
    before_001 = checksum(legacy_dsn)
    before = _docingest_checksum(dsn, skip=("events",))
    blobs = rt.blobs
    summary = await _migrate(legacy_dsn, dsn, blobs_from=export, blobs=blobs)
    assert summary.committed and list(blobs.iter_keys())
    removed = await rollback.rollback(dsn, summary.batch, blobs)
    assert removed["documents"] == len(_jobs_any(legacy_dsn))
    assert _docingest_checksum(dsn, skip=("events",)) == before
    assert list(blobs.iter_keys()) == []
    assert checksum(legacy_dsn) == before_001
    with psycopg.connect(dsn) as conn:
        actions = [
            r[0] for r in conn.execute("SELECT action FROM docingest.events ORDER BY event_id")
        ]
    assert actions == ["migration.001.batch", "migration.001.rollback"]
    assert await rollback.rollback(dsn, summary.batch, blobs) == {}  # unknown batch: nothing


def _jobs_any(legacy_dsn: str) -> list[Any]:
    with psycopg.connect(legacy_dsn) as conn:
        return conn.execute("SELECT document_id FROM upload_pipeline.documents").fetchall()


async def test_migrated_chunks_stored_document_is_finished_embedding_only_what_is_missing(
    legacy_dsn: str, dsn: str, tmp_path: Path
) -> None:
    legacy = Legacy001(legacy_dsn)
    try:
        partial = legacy.document(jobs=[("embedding", "working")], chunks=_chunks("partial", "w"))
        done = legacy.document(jobs=[("embedded", "queued")], chunks=_chunks("full", "w2"))
    finally:
        legacy.close()
    await _migrate(legacy_dsn, dsn)
    assert {k: v["status"] for k, v in _jobs(dsn).items()} == {
        partial.document_id: "chunks_stored",
        done.document_id: "embeddings_stored",
    }
    embedder = CountingEmbedder(DIMENSIONS)
    assert (embedder.model, embedder.version) == (MODEL, VERSION)
    rt = dataclasses.replace(make_runtime(dsn, tmp_path / "home"), embedder=embedder)
    assert await run_worker(rt, once=True, handle_signals=False) == 2
    assert embedder.inputs == 1  # only the chunk without a hash-lexical vector
    jobs = _jobs(dsn)
    assert {v["status"] for v in jobs.values()} == {"complete"}
    assert jobs[partial.document_id]["promoted"] == jobs[done.document_id]["promoted"] == 3
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        got = {
            r[0]: r[1].to_numpy()
            for r in conn.execute(
                "SELECT chunk_id, embedding FROM docingest.document_chunks WHERE document_id = %s",
                (partial.document_id,),
            )
        }
    for cid in partial.chunk_ids[:2]:  # carried vectors were kept, not re-embedded
        assert hashing.vector_sha(got[cid]) == hashing.vector_sha(as_stored(partial.vectors[cid]))
    assert hashing.vector_sha(got[partial.chunk_ids[2]]) == hashing.vector_sha(
        as_stored(_hash_vector(partial.texts[2]))
    )
