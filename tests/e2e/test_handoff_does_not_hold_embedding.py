"""A worker's embedding batcher sends a partial request without waiting for a slot that is
only handing a file to the remote parser: that job brings no text until the parser calls
back, seconds later (issue 13: what held the I/O-bound scaling run's documents back)."""

from __future__ import annotations

import uuid
from pathlib import Path

from docingest.store.db import open_pool
from docingest.worker.embed_batcher import MAX_WAIT_S
from tests.conftest import EXAMPLES
from tests.e2e.conftest import (
    LLAMAPARSE_API_KEY,
    WEBHOOK_SECRET,
    openai_env,
    start_fake_llamaparse,
)
from tests.e2e.test_embedding_spend import control, document, place, rows, work_until
from tests.helpers import make_runtime, upload

UPLOAD_S = 3 * MAX_WAIT_S  # the parser takes this long to accept the other job's file


def _events(dsn: str, job_id: uuid.UUID) -> dict[str, float]:
    found = rows(
        dsn,
        "SELECT action, min(extract(epoch FROM at))::float8 FROM docingest.events"
        " WHERE job_id = %s GROUP BY action",
        job_id,
    )
    return {str(a): float(t) for a, t in found}


async def test_an_embedding_request_does_not_wait_for_a_slot_submitting_a_remote_parse(
    dsn: str, tmp_path: Path, fake_openai: str
) -> None:
    with start_fake_llamaparse() as parser:
        control(parser, upload_delay_ms=UPLOAD_S * 1000)
        rt = make_runtime(
            dsn,
            tmp_path,
            **openai_env(fake_openai),
            DOCINGEST_PARSER="llamaparse",
            DOCINGEST_LLAMAPARSE_URL=parser,
            DOCINGEST_LLAMAPARSE_API_KEY=LLAMAPARSE_API_KEY,
            DOCINGEST_WEBHOOK_SECRET=WEBHOOK_SECRET,
            DOCINGEST_PUBLIC_URL="http://127.0.0.1:9",  # no callback is needed here
        )
        try:
            [parsed] = await place(rt, document(1, 2, 3))  # ready for chunking and embedding
            async with await open_pool(dsn) as pool, pool.connection() as conn:
                pdf = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
                uploaded = (await upload(conn, rt, uuid.uuid4(), pdf)).job_id

            def both_moved() -> bool:
                done = _events(dsn, parsed)
                return "job.complete" in done and "parse.submitted" in _events(dsn, uploaded)

            await work_until(rt, both_moved, timeout_s=60)
        finally:
            await rt.embedder.aclose()
    a, b = _events(dsn, parsed), _events(dsn, uploaded)
    # the other job sat in its slot, uploading, for UPLOAD_S; the request went meanwhile
    assert a["job.complete"] < b["parse.submitted"]
    waited = a["job.complete"] - a["job.embedding_in_progress"]
    assert waited < MAX_WAIT_S / 2, f"the embedding request waited {waited:.2f} s"
