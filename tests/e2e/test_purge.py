"""`docingest purge --older-than DAYS [--dry-run]`: retention removes old documents with
everything derived from them, keeps newer ones and the audit trail."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg

from docingest.store.db import open_pool
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.e2e.conftest import run_cli, stack_env
from tests.helpers import make_runtime, upload

PER_DOCUMENT = {
    "chunks": "SELECT count(*) FROM docingest.document_chunks WHERE document_id = %s",
    "vectors": "SELECT count(embedding) FROM docingest.document_chunks WHERE document_id = %s",
    "chunk_buffer": "SELECT count(*) FROM docingest.document_chunk_buffer WHERE document_id = %s",
    "vector_buffer": "SELECT count(*) FROM docingest.document_vector_buffer WHERE document_id = %s",
    "jobs": "SELECT count(*) FROM docingest.upload_jobs WHERE document_id = %s",
    "documents": "SELECT count(*) FROM docingest.documents WHERE document_id = %s",
}


def _rows(dsn: str, document_id: uuid.UUID) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            name: conn.execute(sql, (document_id,)).fetchone()[0]  # type: ignore[index]
            for name, sql in PER_DOCUMENT.items()
        }


def _events(dsn: str, document_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT actor, action, detail::text FROM docingest.events WHERE document_id = %s"
            " ORDER BY event_id",
            (document_id,),
        ).fetchall()


async def test_purge_removes_only_old_documents_and_all_they_left(dsn: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    rt = make_runtime(dsn, home)
    user = uuid.uuid4()
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            old = await upload(
                conn, rt, user, EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
            )
            new = await upload(conn, rt, user, EXAMPLES / "sbc_uhc_bronze_2026.pdf")
        assert await run_worker(rt, concurrency=2, once=True, handle_signals=False) == 2
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE docingest.documents SET created_at = now() - interval '40 days'"
                " WHERE document_id = %s",
                (old.document_id,),
            )
            cur = await conn.execute(
                "SELECT d.document_id, d.raw_path, j.parsed_path FROM docingest.documents d"
                " JOIN docingest.upload_jobs j USING (document_id)"
            )
            paths = {
                r["document_id"]: (r["raw_path"], r["parsed_path"]) for r in await cur.fetchall()
            }
    finally:
        await pool.close()
    before = _rows(dsn, old.document_id)
    assert before["chunks"] > 0 and before["vectors"] > 0
    assert all(paths[old.document_id]) and all(paths[new.document_id])

    env = stack_env(dsn, home)
    dry = run_cli(env, "purge", "--older-than", "30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would purge {old.document_id}" in dry.stdout
    assert str(new.document_id) not in dry.stdout
    assert _rows(dsn, old.document_id) == before

    done = run_cli(env, "purge", "--older-than", "30")
    assert done.returncode == 0, done.stderr
    assert "purged 1 documents older than 30 days" in done.stdout

    assert set(_rows(dsn, old.document_id).values()) == {0}
    assert _rows(dsn, new.document_id)["vectors"] > 0
    for key in paths[old.document_id]:
        assert not await rt.blobs.exists(key)
    for key in paths[new.document_id]:
        assert await rt.blobs.exists(key)
    events = _events(dsn, old.document_id)
    assert events[-1][:2] == ("ops:purge", "document.purge")
    assert len(events) > 1  # the document's earlier audit trail stays
    assert "glossary" not in str(events).lower()  # ids only, never the filename
