"""In-process PDF -> markdown conversion with pypdfium2 (PDFium).

Runs inside the sandboxed parse child (``parse_child``); callers in the worker use
``local_parser.parse_pdf``, which never loads a PDF in their own process.

Output: every page starts with ``<!-- page N -->`` and a blank line. Headings come from
font size: the body size is the size carrying the most letters/digits in the document;
short, non-sentence lines clearly larger than that become ``#``/``##``/``###`` by size
rank. Bullet glyphs at line start become ``- ``. Paragraphs (found from vertical gaps
between baselines) are separated by blank lines.

PDFium's text API is called once per page for the text; font size and position are read
for at most three characters per line, so the cost is a few ctypes calls per line rather
than per character.
"""

from __future__ import annotations

import ctypes
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docingest.clients.pdf_bomb import check_decompression
from docingest.clients.pdf_layout import HEADING_MIN_RATIO, MAX_HEADING_CHARS, Line, Page, render
from docingest.domain.errors import ErrorCode, ParseError

__all__ = [
    "MIN_ALNUM_RATIO",
    "MIN_DOC_ALNUM",
    "MIN_PAGE_ALNUM",
    "ParsedPdf",
    "pdf_to_markdown",
]


@dataclass(frozen=True, slots=True)
class ParsedPdf:
    """Result of a successful parse.

    ``empty_pages`` counts pages with fewer than ``MIN_PAGE_ALNUM`` letters/digits
    (scanned or drawing-only pages); ``repaired`` is true when the file only opened
    after a fallback or PDFium had to rebuild its structure (junk before the header,
    broken cross-reference table).
    """

    markdown: str
    pages: int
    repaired: bool
    empty_pages: int


# --- thresholds (see docs/_parser_decision.md) ------------------------------------------
PDF_HEADER = b"%PDF-"
MAX_HEADER_OFFSET = 1024
#: a page with fewer letters/digits than this counts as empty (no usable text layer)
MIN_PAGE_ALNUM = 16
#: a document needs at least this many letters/digits in total ...
MIN_DOC_ALNUM = 32
#: ... and at least this share of letters/digits among its non-space characters
#: (broken ToUnicode maps yield control-character garbage: 0.13 in the corpus, real
#: text layers are >= 0.5)
MIN_ALNUM_RATIO = 0.30
SIZE_QUANTUM = 0.1
#: letters/digits seen before the running body size is trusted to skip second samples
WARMUP_ALNUM = 2000

_LINE_RE = re.compile(r"[^\r\n]+")
_ALNUM_RE = re.compile(r"[^\W_]")
_LAST_ALNUM_RE = re.compile(r"[^\W_](?=[\W_]*$)")
_NON_ALNUM_RE = re.compile(r"[\W_]+")
# the ASCII characters `_NON_ALNUM_RE` matches, for `bytes.translate` (`_alnum`)
_ASCII_NON_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())
# control chars, soft hyphen, zero-width and bidi controls, BOM, specials, surrogates
_DROP_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\ufeff\ufff9-\ufffd\uffff\ud800-\udfff]"
)
_PRIVATE_USE_RE = re.compile("[\ue000-\uf8ff]")
# PDFium reports some hyphen glyphs as U+FFFE (and old builds as U+0002)
_HYPHEN_RE = re.compile("[\ufffe\x02]")
_BULLET_RE = re.compile(
    "^(?:[•▪◦●○■□▫‣⁃∙◆◇➢➤►▶✓✔❖\uf000-\uf0ff]\\s*|[-*]\\s+|[-*]$)",
)
_STARTXREF_RE = re.compile(rb"startxref\s+(\d{1,15})")
_XREF_TARGET_RE = re.compile(rb"\s*(?:xref|\d+\s+\d+\s+obj)")


def pdf_to_markdown(
    data: bytes,
    *,
    max_pages: int,
    max_page_chars: int | None = None,
    max_document_chars: int | None = None,
) -> ParsedPdf:
    """Convert PDF bytes to markdown. Raises ``ParseError`` with a content-free message:
    ``text_limit`` as soon as one page holds more than ``max_page_chars`` characters or the
    pages so far more than ``max_document_chars`` (counted before the text is extracted)."""
    if max_pages < 1:
        raise ValueError("max_pages must be >= 1")
    check_decompression(data)  # before PDFium inflates anything
    budget = _TextBudget(max_page_chars, max_document_chars)
    doc, repaired = _open(data)
    try:
        page_count = len(doc)
        if page_count == 0:
            raise ParseError(ErrorCode.NO_PAGES, "document has no pages")
        if page_count > max_pages:
            raise ParseError(
                ErrorCode.TOO_MANY_PAGES, f"document has {page_count} pages, limit {max_pages}"
            )
        pages = []
        running: Counter[float] = Counter()
        for index in range(page_count):
            page = _extract_page(doc, index, _last_sample_floor(running), budget)
            for line in page.lines:
                if line.size > 0:
                    running[line.size] += line.alnum
            pages.append(page)
    finally:
        doc.close()

    total_alnum = sum(p.alnum for p in pages)
    total_nonspace = sum(p.nonspace for p in pages)
    empty_pages = sum(1 for p in pages if p.alnum < MIN_PAGE_ALNUM)
    if (
        total_alnum < MIN_DOC_ALNUM
        or empty_pages == page_count
        or total_alnum < MIN_ALNUM_RATIO * total_nonspace
    ):
        raise ParseError(
            ErrorCode.NO_TEXT,
            f"no usable text layer ({total_alnum} letters/digits on {page_count} pages)",
        )
    markdown = render(pages)
    return ParsedPdf(
        markdown=markdown, pages=page_count, repaired=repaired, empty_pages=empty_pages
    )


# --- opening -----------------------------------------------------------------------------


def _open(data: bytes) -> tuple[Any, bool]:
    offset = data.find(PDF_HEADER, 0, MAX_HEADER_OFFSET + len(PDF_HEADER))
    if offset < 0:
        raise ParseError(ErrorCode.CORRUPT_PDF, "no PDF header in the first 1024 bytes")
    try:
        doc = _load(data)
        # PDFium tolerates leading junk and rebuilds broken xref tables silently;
        # report both as repairs.
        return doc, offset > 0 or not _xref_looks_intact(data, offset)
    except _LoadFailed as first:
        if offset == 0:
            raise first.error from None
    try:
        return _load(data[offset:]), True
    except _LoadFailed as second:
        raise second.error from None


class _LoadFailed(Exception):
    def __init__(self, error: ParseError) -> None:
        super().__init__(error.code)
        self.error = error


def _load(data: bytes) -> Any:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = exc.err_code
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            err = ParseError(ErrorCode.ENCRYPTED, "a password is required to open the document")
        elif code == pdfium_c.FPDF_ERR_SECURITY:
            err = ParseError(ErrorCode.ENCRYPTED, "unsupported encryption (security handler)")
        else:
            err = ParseError(ErrorCode.CORRUPT_PDF, f"PDFium could not load the file (code {code})")
        raise _LoadFailed(err) from None


def _xref_looks_intact(data: bytes, offset: int) -> bool:
    """Cheap check that ``startxref`` points at an xref table or xref stream object."""
    keyword = data.rfind(b"startxref", max(offset, len(data) - 4096))
    match = _STARTXREF_RE.match(data, keyword) if keyword >= 0 else None
    if match is None:
        return False
    target = offset + int(match.group(1))
    return target < len(data) and _XREF_TARGET_RE.match(data, target) is not None


# --- extraction --------------------------------------------------------------------------


def _last_sample_floor(sizes: Counter[float]) -> float:
    """Smallest first-character size worth a second sample (only possible headings need
    one), from the body size seen so far; 0 (always sample) until enough text was seen."""
    if sum(sizes.values()) < WARMUP_ALNUM:
        return 0.0
    body = max(sizes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return body * HEADING_MIN_RATIO * 0.95


class _TextBudget:
    """Characters a page and the whole document may hold (None: unlimited)."""

    def __init__(self, per_page: int | None, per_document: int | None) -> None:
        self.per_page, self.per_document = per_page, per_document
        self.used = 0

    def take(self, chars: int) -> None:
        self.used += chars
        if self.per_page is not None and chars > self.per_page:
            raise ParseError(
                ErrorCode.TEXT_LIMIT, f"a page holds {chars} characters, limit {self.per_page}"
            )
        if self.per_document is not None and self.used > self.per_document:
            raise ParseError(
                ErrorCode.TEXT_LIMIT, f"the document exceeds {self.per_document} characters"
            )


def _extract_page(doc: Any, index: int, last_sample_floor: float, budget: _TextBudget) -> Page:
    try:
        page = doc[index]
    except pdfium.PdfiumError:
        return Page(lines=[], alnum=0, nonspace=0)
    try:
        textpage = page.get_textpage()
        try:
            budget.take(int(pdfium_c.FPDFText_CountChars(textpage)))
            return _page_lines(textpage, last_sample_floor)
        finally:
            textpage.close()
    except pdfium.PdfiumError:
        return Page(lines=[], alnum=0, nonspace=0)
    finally:
        page.close()


def _page_lines(textpage: Any, last_sample_floor: float) -> Page:
    text = str(textpage.get_text_range())
    if not text:
        return Page(lines=[], alnum=0, nonspace=0)
    nonspace = len("".join(text.split()))  # str.split's whitespace is regex \s
    base = _text_index_base(textpage)
    sampler = _Sampler(textpage.raw, text, base)
    lines: list[Line] = []
    page_alnum = 0
    for match in _LINE_RE.finditer(text):
        raw = match.group()
        cleaned, bullet = _clean_line(raw)
        if not cleaned and not bullet:
            continue
        alnum = _alnum(cleaned)
        page_alnum += alnum
        if alnum:
            maybe_heading = len(cleaned) <= MAX_HEADING_CHARS and not bullet
            size, y = sampler.sample(
                raw, match.start(), both_ends=maybe_heading, floor=last_sample_floor
            )
        else:
            size, y = 0.0, None
        lines.append(Line(text=cleaned, size=size, y=y, alnum=alnum, bullet=bullet))
    return Page(lines=lines, alnum=page_alnum, nonspace=nonspace)


def _alnum(line: str) -> int:
    """Letters and digits in `line` (what `_NON_ALNUM_RE` leaves). Most lines are ASCII, where
    `bytes.translate` counts them several times faster than the regex (it ran for every line
    of every page)."""
    if line.isascii():
        return len(line.encode("ascii").translate(None, _ASCII_NON_ALNUM))
    return len(_NON_ALNUM_RE.sub("", line))


def _text_index_base(textpage: Any) -> int:
    """Text index of the first character returned by ``get_text_range()``."""
    count = int(pdfium_c.FPDFText_CountChars(textpage))
    for char_index in range(min(count, 64)):
        text_index = int(pdfium_c.FPDFText_GetTextIndexFromCharIndex(textpage, char_index))
        if text_index >= 0:
            return text_index
    return 0


class _Sampler:
    """Reads effective font size and baseline for a few characters of a line."""

    def __init__(self, textpage: Any, text: str, base: int) -> None:
        self._tp = textpage
        self._text = text
        self._base = base
        self._matrix = pdfium_c.FS_MATRIX()
        self._pm = ctypes.byref(self._matrix)
        self._x = ctypes.c_double()
        self._y = ctypes.c_double()
        self._px = ctypes.byref(self._x)
        self._py = ctypes.byref(self._y)
        self._identity = base == 0 and int(pdfium_c.FPDFText_CountChars(textpage)) == len(text)

    def sample(
        self, line: str, start: int, *, both_ends: bool, floor: float
    ) -> tuple[float, float | None]:
        """Size of the first (and, for possible headings, the last) letter/digit; the
        baseline of the first."""
        first = _ALNUM_RE.search(line)
        if first is None:
            return 0.0, None
        size = 0.0
        y: float | None = None
        char_index = self._char_index(start + first.start())
        if char_index >= 0:
            size = self._size(char_index)
            if pdfium_c.FPDFText_GetCharOrigin(self._tp, char_index, self._px, self._py):
                y = float(self._y.value)
        if both_ends and size >= floor:
            last = _LAST_ALNUM_RE.search(line)
            if last is not None and last.start() != first.start():
                char_index = self._char_index(start + last.start())
                if char_index >= 0:
                    last_size = self._size(char_index)
                    size = min(size, last_size) if size > 0 else last_size
        return _quantize(size), y

    def _char_index(self, text_pos: int) -> int:
        if self._identity:
            char_index = text_pos
        else:
            char_index = int(
                pdfium_c.FPDFText_GetCharIndexFromTextIndex(self._tp, self._base + text_pos)
            )
            if char_index < 0:
                return -1
        # guard against text/char index drift (ligatures, inserted chars)
        if int(pdfium_c.FPDFText_GetUnicode(self._tp, char_index)) != ord(self._text[text_pos]):
            return -1
        return char_index

    def _size(self, char_index: int) -> float:
        size = abs(float(pdfium_c.FPDFText_GetFontSize(self._tp, char_index)))
        # FPDFText_GetFontSize is the Tf operand; producers often use "1 Tf" and scale
        # with the text matrix / CTM (some with a negative size and a flipped matrix),
        # so apply the vertical scale of the char matrix.
        if pdfium_c.FPDFText_GetMatrix(self._tp, char_index, self._pm):
            scale = math.hypot(float(self._matrix.c), float(self._matrix.d))
            if math.isfinite(scale) and scale > 0:
                size *= scale
        return size if math.isfinite(size) and size > 0 else 0.0


def _quantize(size: float) -> float:
    return round(size / SIZE_QUANTUM) * SIZE_QUANTUM


def _clean_line(raw: str) -> tuple[str, bool]:
    # Printable ASCII (most lines) holds nothing the three character classes below replace,
    # and the bullet pattern takes the spaces after a bullet with it, so one split and join
    # is the whole cleaning.
    plain = raw.isascii() and raw.isprintable()
    line = raw if plain else _DROP_RE.sub("", _HYPHEN_RE.sub("-", raw))
    line = " ".join(line.split())
    bullet = False
    match = _BULLET_RE.match(line)
    if match is not None:
        bullet = True
        line = line[match.end() :]
    if not plain:
        line = " ".join(_PRIVATE_USE_RE.sub(" ", line).split())
    return line, bullet
