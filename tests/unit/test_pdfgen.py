"""Generated validation PDFs are real PDFs, of the asked size, with text unique per seed."""

from __future__ import annotations

from docingest.clients.pdf_markdown import pdf_to_markdown
from docingest.testing.pdfgen import make_pdf


def test_generated_pdf_parses_to_its_pages_and_seed_unique_text() -> None:
    a, b = make_pdf(7, pages=3), make_pdf(8, pages=3)
    assert a.startswith(b"%PDF-1.4") and a != b and make_pdf(7, pages=3) == a
    parsed_a = pdf_to_markdown(a, max_pages=10).markdown
    parsed_b = pdf_to_markdown(b, max_pages=10).markdown
    assert parsed_a.count("<!-- page ") == 3
    assert "ref 7-2-38." in parsed_a and "ref 7-" not in parsed_b
    assert len(make_pdf(7, pages=6)) > 1.8 * len(a)
