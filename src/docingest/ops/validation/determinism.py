"""Idempotency and determinism in `docingest validate`: the same bytes processed again
(re-upload, another user's upload, a retry after a refused embedding input) give identical
chunks and vectors, and no embedding input is paid twice. Vectors are reused by text, so a
repeat's vector hashes prove the stored rows, not a second call to the embedder.

`tests/e2e/test_determinism.py` proves the same at every status of the state machine; this
phase puts the numbers in the report."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from docingest.ops.validation.stack import Stack
from docingest.ops.validation.traffic import Upload, upload
from docingest.store.chunks import ChunkFingerprint, fingerprint
from docingest.store.db import open_pool
from docingest.testing.pdfgen import make_pdf, page_lines

SEED, POISONED_SEED = 700_001, 700_002


def determinism(stack: Stack) -> dict[str, Any]:
    stack.restart_workers(2)
    data = make_pdf(SEED, pages=4)
    with stack.client() as owner, stack.client() as other:
        first = _complete(stack, upload(owner, "determinism", data))
        reference = _fingerprint(stack, first)
        stack.openai_stats(reset=True)
        again = upload(owner, "determinism", data)
        reupload_same_ids = (again.duplicate, again.document_id, again.job_id) == (
            True,
            first.document_id,
            first.job_id,
        )
        reupload_unchanged = _fingerprint(stack, first) == reference
        second = _complete(stack, upload(other, "determinism", data))
        same_content = _hashes(_fingerprint(stack, second)) == _hashes(reference)
        billed_again = int(stack.openai_stats()["inputs"])
        retry = _retry_after_poison(stack, owner, other)
    return {
        "determinism": {
            "chunks": len(reference),
            "reupload_same_ids": reupload_same_ids,
            "reupload_rows_unchanged": reupload_unchanged,
            "second_user_same_chunk_and_vector_hashes": same_content,
            "inputs_billed_for_repeats": billed_again,
            **retry,
            "settings": {**stack.describe_settings(), "workers": 2},
        }
    }


def _retry_after_poison(stack: Stack, owner: Any, other: Any) -> dict[str, Any]:
    """One chunk's text refused by the embedder (a 400): the job fails with the other
    chunks' vectors stored; after the fault is cleared, a retry embeds only what is missing
    and ends with the chunks a clean upload of the same bytes gets."""
    data = make_pdf(POISONED_SEED, pages=4)
    marker = page_lines(POISONED_SEED, 3, 40)[-1]  # the last line: in the last chunk
    stack.openai_control(poison_substring=marker)
    failed = upload(owner, "poisoned", data)
    [row] = stack.wait_terminal([_job(failed)], 120)
    stack.openai_control(poison_substring=None)
    [progress] = stack.query(
        "SELECT (progress->>'chunks_total')::int AS total, (progress->>'embeds_done')::int AS"
        " done FROM docingest.upload_jobs WHERE job_id = %s::uuid",
        (failed.job_id,),
    )
    stack.openai_stats(reset=True)
    r = owner.post(f"/v1/jobs/{failed.job_id}/retry")
    retried = _complete(stack, failed) if r.status_code == 202 else None
    billed_on_retry = int(stack.openai_stats()["inputs"])
    clean = _complete(stack, upload(other, "poisoned", data))
    after = _fingerprint(stack, retried) if retried else []
    return {
        "retry_failed_status": row["status"],
        "retry_chunks": len(after),
        "retry_embedded_before_failure": progress["done"],
        "retry_inputs_billed": billed_on_retry,
        "retry_same_chunks_as_clean_upload": bool(after)
        and [(f.chunk_ord, f.chunk_sha) for f in after]
        == [(f.chunk_ord, f.chunk_sha) for f in _fingerprint(stack, clean)],
    }


def _job(u: Upload) -> str:
    if u.job_id is None:
        raise RuntimeError(f"upload refused with HTTP {u.status_code}")
    return u.job_id


def _complete(stack: Stack, u: Upload) -> Upload:
    [row] = stack.wait_terminal([_job(u)], 120)
    if row["status"] != "complete":
        raise RuntimeError(f"job ended {row['status']}")
    return u


def _hashes(rows: list[ChunkFingerprint]) -> list[tuple[int, str, str]]:
    return [(r.chunk_ord, r.chunk_sha, r.vector_sha) for r in rows]


def _fingerprint(stack: Stack, u: Upload) -> list[ChunkFingerprint]:
    async def read() -> list[ChunkFingerprint]:
        pool = await open_pool(stack.dsn, max_size=1)
        try:
            async with pool.connection() as conn:
                return await fingerprint(conn, uuid.UUID(str(u.document_id)))
        finally:
            await pool.close()

    return asyncio.run(read())
