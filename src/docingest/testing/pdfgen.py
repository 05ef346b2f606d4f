"""Generate real, parseable PDFs of a controlled size for validation and load tests.

The text is made-up insurance prose, unique per `seed`, so that neither the per-user
upload dedupe nor the per-text embedding reuse turns two generated documents into one.
The file is a plain PDF 1.4 (Helvetica, uncompressed content streams): every parser the
project uses reads it, and its size depends only on `pages` and `lines_per_page`.
"""

from __future__ import annotations

import random

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


def make_pdf(seed: int, pages: int = 2, lines_per_page: int = 40) -> bytes:
    """A `pages`-page PDF whose text is unique to `seed`."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)  # object numbers start at 1

    catalog = add(b"")  # filled in once the page tree's number is known
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids: list[int] = []
    for page in range(pages):
        text = "".join(
            f"({_escape(line)}) Tj T* " for line in page_lines(seed, page, lines_per_page)
        )
        stream = f"BT /F1 9 Tf 40 800 Td 13 TL {text}ET".encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 842] "
                b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_obj, font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    return bytes(out)
