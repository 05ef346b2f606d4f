"""Generate real, parseable PDFs of a controlled size for validation and load tests.

The text is made-up insurance prose, unique per `seed`, so that neither the per-user
upload dedupe nor the per-text embedding reuse turns two generated documents into one.
The file is a plain PDF 1.4 (Helvetica, uncompressed content streams): every parser the
project uses reads it, and its size depends only on `pages` and `lines_per_page`.
"""

from __future__ import annotations

import random
import zlib

_WORDS = [
    "deductible",
    "coinsurance",
    "copayment",
    "premium",
    "network",
    "provider",
    "referral",
    "formulary",
    "preventive",
    "emergency",
    "inpatient",
    "outpatient",
    "specialist",
    "pharmacy",
    "claim",
    "appeal",
    "benefit",
    "coverage",
    "exclusion",
    "allowed",
    "amount",
    "maximum",
    "annual",
    "member",
    "plan",
    "tier",
    "generic",
    "brand",
    "prior",
    "authorization",
    "hospital",
    "surgery",
    "imaging",
    "laboratory",
    "therapy",
    "rehabilitation",
]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_lines(seed: int, page: int, lines: int) -> list[str]:
    """Deterministic lines of text for one page of document `seed`."""
    rng = random.Random(seed * 1_000_003 + page)
    out = [f"Section {page + 1}. Plan document {seed} benefits summary"]
    for n in range(lines - 1):
        words = " ".join(rng.choice(_WORDS) for _ in range(9))
        out.append(f"{n + 1}. The {words} ref {seed}-{page}-{n}.")
    return out


def text_stream(lines: list[str], *, size: int = 9, top: int = 800) -> bytes:
    """A content stream showing `lines` top-down in Helvetica (/F1)."""
    shown = "".join(f"({_escape(line)}) Tj T* " for line in lines)
    return f"BT /F1 {size} Tf 40 {top} Td {size + 4} TL {shown}ET".encode("latin-1")


def assemble_pdf(page_streams: list[bytes], *, flate: bool = False) -> bytes:
    """A PDF 1.4 with one page per content stream (Helvetica as /F1). With `flate`, the
    streams are declared FlateDecode (the caller deflated them); nothing here inflates."""
    filters = b" /Filter /FlateDecode" if flate else b""
    catalog, pages_obj, font = 1, 2, 3
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids: list[int] = []
    for stream in page_streams:
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), filters) + stream)
        objects[-1] += b"\nendstream"
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 842] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
            % (pages_obj, font, content)
        )
        kids.append(len(objects))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))

    return _serialize(objects, catalog)


def make_pdf(seed: int, pages: int = 2, lines_per_page: int = 40) -> bytes:
    """A `pages`-page PDF whose text is unique to `seed`."""
    return assemble_pdf(
        [text_stream(page_lines(seed, page, lines_per_page)) for page in range(pages)]
    )


def make_amplified_pdf(pages: int = 10, draws: int = 2000, seed: int = 0) -> bytes:
    """A tiny PDF that draws a lot: one form XObject holding a page of text, drawn `draws`
    times on each of `pages` pages through one shared, deflated content stream. About 3 KB on
    disk at the defaults, tens of MB of drawn content (the hostile upload of issue 11)."""
    form = zlib.compress(text_stream(page_lines(seed, 0, 40)), 9)
    content = zlib.compress(b"q /Fm0 Do Q\n" * draws, 9)
    catalog, pages_obj, font, form_obj, content_obj = 1, 2, 3, 4, 5
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 842] /Resources << /Font << /F1 3 0 R"
        b" >> >> /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(form), form),
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    kids = []
    for _ in range(pages):
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 842] /Resources << /Font"
            b" << /F1 %d 0 R >> /XObject << /Fm0 %d 0 R >> >> /Contents %d 0 R >>"
            % (pages_obj, font, form_obj, content_obj)
        )
        kids.append(len(objects))
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))
    return _serialize(objects, catalog)


def _serialize(objects: list[bytes], catalog: int) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    return bytes(out)
