"""The fake LlamaParse's parser processes: real markdown for a PDF, an error code for bytes
that are not one, and still working after more parses than it has processes (a pool that
retires its processes hangs on Python 3.11: CPython gh-115634)."""

from __future__ import annotations

import asyncio

from docingest.testing.fake_parse_pool import ParsePool
from docingest.testing.pdfgen import make_pdf, page_lines


async def test_parses_many_documents_and_refuses_garbage() -> None:
    pool = ParsePool(2)
    try:
        answers = await asyncio.gather(*(pool.parse(make_pdf(seed, pages=1)) for seed in range(12)))
        bad = await pool.parse(b"%PDF-1.7 not really")
    finally:
        pool.close()
    assert all(a["ok"] for a in answers)
    assert page_lines(3, 0, 40)[1].split(" ref ")[0][:20] in answers[3]["markdown"]
    assert bad["ok"] is False and bad["code"] in ("corrupt_pdf", "no_text")
