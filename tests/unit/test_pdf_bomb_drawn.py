"""The decompression guard counts what pages draw (issue 11): forms expanded per `Do`,
recursively, resolved through `/XObject` dictionaries; real files and modest reuse pass."""

from __future__ import annotations

import pytest

from docingest.clients.pdf_bomb import check_decompression
from docingest.domain.errors import ErrorCode, ParseError
from docingest.testing.pdfgen import make_amplified_pdf, make_pdf
from tests.conftest import EXAMPLES


def nested_forms(outer_draws: int, inner_draws: int, text_bytes: int = 1000) -> bytes:
    """A page drawing form A `outer_draws` times; A draws form B `inner_draws` times; B is
    `text_bytes` of text operators. Streams are not compressed (no filter)."""
    text = b"BT /F1 9 Tf (" + b"x" * text_bytes + b") Tj ET"
    a = b"/Fb Do\n" * inner_draws
    page = b"/Fa Do\n" * outer_draws
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /Resources << /XObject << /Fa 5 0 R >> >>"
        b" /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(page), page),
        b"<< /Type /XObject /Subtype /Form /Resources << /XObject << /Fb 6 0 R >> >>"
        b" /Length %d >>\nstream\n%s\nendstream" % (len(a), a),
        b"<< /Type /XObject /Subtype /Form /Length %d >>\nstream\n%s\nendstream"
        % (len(text), text),
    ]
    out = b"%PDF-1.4\n" + b"".join(
        b"%d 0 obj\n%s\nendobj\n" % (n, body) for n, body in enumerate(objs, start=1)
    )
    return out + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def test_the_amplified_pdf_is_refused() -> None:
    with pytest.raises(ParseError) as info:
        check_decompression(make_amplified_pdf())
    assert info.value.code == ErrorCode.DECOMPRESSION_BOMB


def test_nested_forms_multiply() -> None:
    small = nested_forms(100, 100)  # 10,000 draws of 1 KB: 10 MB drawn, under the floor
    assert len(small) < 3000
    check_decompression(small)
    with pytest.raises(ParseError):  # 40,000 draws: 40 MB drawn from a 2 KB file
        check_decompression(nested_forms(200, 200))


@pytest.mark.parametrize("pdf", sorted(EXAMPLES.glob("*.pdf")), ids=lambda p: p.name)
def test_real_documents_pass(pdf: object) -> None:
    check_decompression(pdf.read_bytes())  # type: ignore[attr-defined]


def test_modest_reuse_passes() -> None:
    check_decompression(make_amplified_pdf(pages=2, draws=20))
    check_decompression(make_pdf(1, pages=5))
