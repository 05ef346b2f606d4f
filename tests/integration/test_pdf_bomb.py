"""A decompression bomb (a FlateDecode content stream of hundreds of MB of blanks in a few
hundred KB) fails its job as `decompression_bomb`; a normal PDF in the same run completes."""

from __future__ import annotations

import uuid
import zlib
from pathlib import Path

from docingest.store.db import open_pool
from docingest.testing.pdfgen import assemble_pdf, text_stream
from docingest.worker.runner import run_worker
from tests.conftest import EXAMPLES
from tests.helpers import make_runtime, upload

INFLATED_MIB = 320  # past the guard's 256 MiB floor


def bomb_pdf(inflated_mib: int) -> bytes:
    """One page whose content stream is a line of text followed by `inflated_mib` MiB of
    spaces, deflated piecewise (about 1000:1) so the test never holds the inflated bytes."""
    packer = zlib.compressobj(9)
    parts = [packer.compress(text_stream(["Summary of benefits"]))]
    blank = b" " * (1 << 20)
    parts += [packer.compress(blank) for _ in range(inflated_mib)]
    return assemble_pdf([b"".join([*parts, packer.flush()])], flate=True)


async def test_bomb_fails_with_its_code_and_a_normal_pdf_completes(
    dsn: str, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(bomb_pdf(INFLATED_MIB))
    assert bomb.stat().st_size < 1024 * 1024  # a small upload ...
    rt = make_runtime(dsn, tmp_path / "home")
    user = uuid.uuid4()
    pool = await open_pool(dsn, max_size=1)
    try:
        async with pool.connection() as conn:
            bad = await upload(conn, rt, user, bomb)
            good = await upload(
                conn, rt, user, EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"
            )
        assert await run_worker(rt, concurrency=2, once=True, handle_signals=False) == 2
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT document_id, status::text, last_error FROM docingest.upload_jobs"
            )
            jobs = {r["document_id"]: r for r in await cur.fetchall()}
    finally:
        await pool.close()
    failed = jobs[bad.document_id]
    assert failed["status"] == "failed_parse"
    assert failed["last_error"]["code"] == "decompression_bomb"
    assert "inflate past" in failed["last_error"]["message"]
    assert jobs[good.document_id]["status"] == "complete"
