"""pdf_to_markdown: page markers, headings from font size, bullets, paragraphs, errors.

Small PDFs are written by hand below (Helvetica, WinAnsi text, one content stream per
page) so each test controls font sizes and positions exactly; a few small real files
from the shared corpus check the same behaviour on real producers' output.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.clients.pdf_markdown import (
    _BULLET_RE,
    _DROP_RE,
    _HYPHEN_RE,
    _NON_ALNUM_RE,
    _PRIVATE_USE_RE,
    ParsedPdf,
    _alnum,
    _clean_line,
    pdf_to_markdown,
)
from docingest.domain.errors import ErrorCode, ParseError

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MARKER_RE = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)

# A line is (text, font size in points, baseline y); pages are lists of lines.
Line = tuple[str, float, float]


def make_pdf(
    pages: list[list[Line]],
    *,
    size_via_matrix: bool = False,
    prefix: bytes = b"",
    break_startxref: bool = False,
) -> bytes:
    """Write a minimal, valid PDF 1.4 file.

    ``size_via_matrix`` draws every line with ``1 Tf`` and scales it with the text matrix
    instead (as many producers do), so the font size must be read through the matrix.
    """
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # pages tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids: list[int] = []
    for lines in pages:
        ops: list[bytes] = []
        for text, size, y in lines:
            encoded = text.encode("cp1252")
            escaped = encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            if size_via_matrix:
                ops.append(b"BT /F1 1 Tf %g 0 0 %g 72 %g Tm (%s) Tj ET" % (size, size, y, escaped))
            else:
                ops.append(b"BT /F1 %g Tf 72 %g Td (%s) Tj ET" % (size, y, escaped))
        stream = b"\n".join(ops)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(prefix + b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell() - len(prefix))
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref_at = out.tell() - len(prefix)
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%s\n%%%%EOF\n" % (b"oops" if break_startxref else b"%d" % xref_at))
    return out.getvalue()


BODY = [
    "Your plan pays for covered services after you meet the yearly deductible amount",
    "and your share of the cost is shown in the benefit chart that follows this page",
    "in most cases you pay a fixed copayment for each visit to a network provider",
]


def sample_document() -> list[list[Line]]:
    page1: list[Line] = [
        ("Evidence of Coverage", 24, 740),
        ("Chapter 1 Getting started", 16, 700),
        (BODY[0], 11, 670),
        (BODY[1], 11, 656),
        (BODY[2], 11, 642),
        ("\u2022 Doctor visits", 11, 610),
        ("- Hospital stays", 11, 596),
        ("* Prescription drugs", 11, 582),
        (BODY[0], 11, 550),
    ]
    page2: list[Line] = [
        ("Section 1.1 What this plan covers", 16, 740),
        (BODY[1], 11, 710),
        (BODY[2], 11, 696),
    ]
    return [page1, page2]


def lines_of(markdown: str) -> list[str]:
    return markdown.split("\n")


@pytest.mark.parametrize("size_via_matrix", [False, True], ids=["Tf-size", "matrix-scaled"])
def test_headings_bullets_and_page_markers(size_via_matrix: bool) -> None:
    parsed = pdf_to_markdown(
        make_pdf(sample_document(), size_via_matrix=size_via_matrix), max_pages=10
    )
    assert isinstance(parsed, ParsedPdf)
    assert (parsed.pages, parsed.repaired, parsed.empty_pages) == (2, False, 0)
    lines = lines_of(parsed.markdown)
    assert lines[0:2] == ["<!-- page 1 -->", ""]
    assert "# Evidence of Coverage" in lines
    assert "## Chapter 1 Getting started" in lines
    assert "## Section 1.1 What this plan covers" in lines
    assert [line for line in lines if line.startswith("- ")] == [
        "- Doctor visits",
        "- Hospital stays",
        "- Prescription drugs",
    ]
    # body text is never promoted to a heading
    assert not any(line.startswith("#") and "deductible" in line for line in lines)
    # page 2 starts with its marker and a blank line, after a blank line
    page2 = lines.index("<!-- page 2 -->")
    assert lines[page2 - 1] == "" and lines[page2 + 1] == ""
    assert lines[page2 + 2] == "## Section 1.1 What this plan covers"


def test_markdown_is_clean() -> None:
    markdown = pdf_to_markdown(make_pdf(sample_document()), max_pages=10).markdown
    assert markdown.endswith("\n") and not markdown.endswith("\n\n")
    assert "\n\n\n" not in markdown
    assert all(line == line.rstrip() for line in lines_of(markdown))
    assert [int(n) for n in MARKER_RE.findall(markdown)] == [1, 2]


def test_paragraphs_split_on_vertical_gaps_only() -> None:
    page: list[Line] = [
        (BODY[0], 11, 700),
        (BODY[1], 11, 686),  # next line of the same paragraph
        (BODY[2], 11, 640),  # a paragraph gap
    ]
    lines = lines_of(pdf_to_markdown(make_pdf([page]), max_pages=1).markdown)
    first = lines.index(BODY[0])
    assert lines[first + 1] == BODY[1]
    assert lines[first + 2] == ""
    assert lines[first + 3] == BODY[2]


def test_large_but_sentence_like_or_long_lines_are_not_headings() -> None:
    long_title = "Important " * 14  # > 120 characters
    page: list[Line] = [
        ("This large line ends like a sentence.", 18, 740),
        (long_title.strip(), 18, 710),
        ("Real Heading", 18, 680),
        *[(text, 11, 650 - 14 * i) for i, text in enumerate(BODY * 3)],
    ]
    lines = lines_of(pdf_to_markdown(make_pdf([page]), max_pages=1).markdown)
    assert "# Real Heading" in lines
    assert "This large line ends like a sentence." in lines
    assert long_title.strip() in lines


def test_heading_repeated_on_many_pages_is_a_running_header() -> None:
    pages: list[list[Line]] = [
        [
            ("Plan Booklet 2026", 16, 760),
            (f"Topic number {n} explained", 16, 720),
            *[(text, 11, 690 - 14 * i) for i, text in enumerate(BODY)],
        ]
        for n in range(1, 5)
    ]
    lines = lines_of(pdf_to_markdown(make_pdf(pages), max_pages=10).markdown)
    assert lines.count("Plan Booklet 2026") == 4
    assert "# Topic number 3 explained" in lines


def test_body_lines_that_look_like_markdown_are_escaped() -> None:
    page: list[Line] = [
        ("# No 15, 1st Floor, Whites Road", 11, 700),
        ("<!-- page 9 -->", 11, 686),
        *[(text, 11, 650 - 14 * i) for i, text in enumerate(BODY)],
    ]
    parsed = pdf_to_markdown(make_pdf([page]), max_pages=1)
    lines = lines_of(parsed.markdown)
    assert "\\# No 15, 1st Floor, Whites Road" in lines
    assert "\\<!-- page 9 -->" in lines
    assert MARKER_RE.findall(parsed.markdown) == ["1"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\u2022 Item", ("Item", True)),
        ("\u25aa Item", ("Item", True)),
        ("\u25e6 Item", ("Item", True)),
        ("\uf0b7 Item", ("Item", True)),  # Symbol-font bullet in the private use area
        ("- Item", ("Item", True)),
        ("* Item", ("Item", True)),
        ("-5% discount", ("-5% discount", False)),
        ("out-of\ufffepocket  costs\u200b ", ("out-of-pocket costs", False)),
        ("\x04\x05broken\x10", ("broken", False)),
    ],
)
def test_line_cleaning_and_bullet_glyphs(raw: str, expected: tuple[str, bool]) -> None:
    assert _clean_line(raw) == expected


def test_empty_pages_are_counted_and_keep_their_marker() -> None:
    pages: list[list[Line]] = [
        [(text, 11, 700 - 14 * i) for i, text in enumerate(BODY)],
        [],
        [("12", 11, 40)],  # only a page number
    ]
    parsed = pdf_to_markdown(make_pdf(pages), max_pages=10)
    assert (parsed.pages, parsed.empty_pages) == (3, 2)
    assert parsed.markdown.endswith("<!-- page 2 -->\n\n<!-- page 3 -->\n\n12\n")


# --- errors ---------------------------------------------------------------------------


def parse_error(data: bytes, max_pages: int = 10) -> ErrorCode:
    with pytest.raises(ParseError) as info:
        pdf_to_markdown(data, max_pages=max_pages)
    return info.value.code


def test_not_a_pdf_is_corrupt() -> None:
    assert parse_error(b"oops\n") is ErrorCode.CORRUPT_PDF
    assert parse_error(b"") is ErrorCode.CORRUPT_PDF


def test_truncated_pdf_is_corrupt() -> None:
    data = make_pdf(sample_document())
    assert parse_error(data[: len(data) // 3]) is ErrorCode.CORRUPT_PDF


def test_too_many_pages_is_checked_before_extraction() -> None:
    data = make_pdf(sample_document())
    assert parse_error(data, max_pages=1) is ErrorCode.TOO_MANY_PAGES
    assert pdf_to_markdown(data, max_pages=2).pages == 2


@pytest.mark.parametrize(
    "pages",
    [
        [[], []],
        [[("Potato", 11, 700)], [("Salad", 11, 700)]],
    ],
    ids=["no-text-objects", "a-few-words"],
)
def test_no_meaningful_text_layer(pages: list[list[Line]]) -> None:
    assert parse_error(make_pdf(pages)) is ErrorCode.NO_TEXT


def test_junk_before_header_within_1024_bytes_opens_as_repaired() -> None:
    data = make_pdf(sample_document(), prefix=b"X-Junk: mail gateway banner\r\n" * 20)
    parsed = pdf_to_markdown(data, max_pages=10)
    assert parsed.repaired is True
    assert "# Evidence of Coverage" in lines_of(parsed.markdown)


def test_header_beyond_1024_bytes_is_refused() -> None:
    data = make_pdf(sample_document(), prefix=b"j" * 1100)
    assert parse_error(data) is ErrorCode.CORRUPT_PDF


def test_broken_startxref_is_rebuilt_and_reported_as_repaired() -> None:
    intact = pdf_to_markdown(make_pdf(sample_document()), max_pages=10)
    rebuilt = pdf_to_markdown(make_pdf(sample_document(), break_startxref=True), max_pages=10)
    assert intact.repaired is False
    assert rebuilt.repaired is True
    assert rebuilt.markdown == intact.markdown


def _encrypt(data: bytes, *, user_password: str) -> bytes:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_user_password_means_encrypted() -> None:
    data = _encrypt(make_pdf(sample_document()), user_password="letmein")
    assert parse_error(data) is ErrorCode.ENCRYPTED


def test_empty_user_password_opens_and_parses() -> None:
    data = _encrypt(make_pdf(sample_document()), user_password="")
    parsed = pdf_to_markdown(data, max_pages=10)
    assert parsed.pages == 2
    assert "# Evidence of Coverage" in lines_of(parsed.markdown)


def test_max_pages_must_be_positive() -> None:
    with pytest.raises(ValueError):
        pdf_to_markdown(make_pdf(sample_document()), max_pages=0)


# --- small real files ---------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"shared corpus not found at {CORPUS}"
)


def corpus_bytes(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@needs_corpus
@pytest.mark.corpus
def test_real_glossary_has_headings_and_six_pages() -> None:
    parsed = pdf_to_markdown(
        corpus_bytes("real/glossary_cms_uniform_health_coverage.pdf"), max_pages=50
    )
    assert parsed.pages == 6
    assert [int(n) for n in MARKER_RE.findall(parsed.markdown)] == [1, 2, 3, 4, 5, 6]
    lines = lines_of(parsed.markdown)
    headings = [line for line in lines if re.match(r"^#{1,3} \S", line)]
    assert len(headings) >= 20
    assert "## Allowed Amount" in lines
    assert "## Coinsurance" in lines
    assert "allowed amount for an office visit is $100" in parsed.markdown


@needs_corpus
@pytest.mark.corpus
def test_real_sbc_coverage_examples_are_headings() -> None:
    parsed = pdf_to_markdown(corpus_bytes("real/sbc_cigna_silver_2026.pdf"), max_pages=50)
    lines = lines_of(parsed.markdown)
    assert parsed.pages == 9
    for example in ("Peg is Having a Baby", "Mia’s Simple Fracture"):
        assert any(re.fullmatch(rf"#{{1,3}} {re.escape(example)}", line) for line in lines)


@needs_corpus
@pytest.mark.corpus
def test_real_broken_tounicode_layer_is_no_text() -> None:
    data = corpus_bytes("real/brochure_eap_tulane_lucet_broken_tounicode.pdf")
    assert parse_error(data) is ErrorCode.NO_TEXT


@needs_corpus
@pytest.mark.corpus
def test_real_short_arabic_document_still_counts_as_text() -> None:
    parsed = pdf_to_markdown(
        corpus_bytes("hostile/nonlatin_arabic_rotated_pages.pdf"), max_pages=10
    )
    assert parsed.pages == 4
    assert parsed.markdown.count("habibi") == 4


def _clean_line_slow(raw: str) -> tuple[str, bool]:
    """Every replacement applied, whatever the line holds: the oracle for the fast path."""
    line = " ".join(_DROP_RE.sub("", _HYPHEN_RE.sub("-", raw)).split())
    match = _BULLET_RE.match(line)
    if match is not None:
        line = line[match.end() :]
    return " ".join(_PRIVATE_USE_RE.sub(" ", line).split()), match is not None


@settings(max_examples=3000, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [
                *map(chr, range(0x20, 0x7F)),
                "\t",
                "\x02",
                "\x0b",
                "\xa0",
                "\u2022",
                "\ue001",
                "\ufffe",
            ]
        ),
        max_size=40,
    )
)
def test_clean_line_fast_path_matches_every_replacement(raw: str) -> None:
    assert _clean_line(raw) == _clean_line_slow(raw)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
def test_alnum_count_matches_the_regex(line: str) -> None:
    """The ASCII fast path counts what the regex (Unicode word characters but `_`) leaves."""
    assert _alnum(line) == len(_NON_ALNUM_RE.sub("", line))


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=60))
def test_split_drops_what_regex_whitespace_matches(text: str) -> None:
    """`_page_lines` counts non-space characters with str.split, as the regex `\\s` would."""
    assert len("".join(text.split())) == len(re.sub(r"\s+", "", text))
