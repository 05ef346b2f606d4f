"""What the amplified PDF of issue 11 would cost PDFium, and what the drawn-content guard costs.

The PDF draws one form XObject of text `--draws` times on each of `--pages` pages (about 3.6 KB
at the defaults). Prints the file size, the guard's verdict and time, and the time PDFium
needs to load the first page and build its text page (what the parse child would spend per
page without the guard). Rerun: `.venv/bin/python bench/amplified_pdf.py [--pages N --draws N]`.
"""

from __future__ import annotations

import argparse
import time

import pypdfium2 as pdfium

from docingest.clients.pdf_bomb import MAX_DRAWN_RATIO, MIN_DRAWN_BUDGET_BYTES, check_decompression
from docingest.domain.errors import ParseError
from docingest.testing.pdfgen import make_amplified_pdf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    data = make_amplified_pdf(pages=args.pages, draws=args.draws)
    print(
        f"settings: pages={args.pages} draws={args.draws}; guard budget: max("
        f"{MIN_DRAWN_BUDGET_BYTES} bytes, {MAX_DRAWN_RATIO} x file size) of drawn content"
    )
    started = time.perf_counter()
    try:
        check_decompression(data)
        verdict = "accepted"
    except ParseError as exc:
        verdict = f"refused: {exc.code}"
    guard_ms = (time.perf_counter() - started) * 1000
    print(f"file {len(data)} bytes; guard {verdict} in {guard_ms:.1f} ms")
    started = time.perf_counter()
    doc = pdfium.PdfDocument(data)
    page = doc[0]
    text = page.get_textpage()
    chars = text.count_chars()
    pdfium_s = time.perf_counter() - started
    print(f"PDFium, first page only: {chars} characters in {pdfium_s:.2f} s")
    text.close()
    page.close()
    doc.close()


if __name__ == "__main__":
    main()
