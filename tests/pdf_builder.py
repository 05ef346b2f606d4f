"""Hand-built one-page PDFs for tests that need exact content (a made-up member name, a
decompression bomb): the bytes are written directly, so nothing parses or inflates them."""

from __future__ import annotations


def one_page_pdf(stream: bytes, *, flate: bool = False) -> bytes:
    """A one-page PDF (Helvetica as /F1) whose content stream is `stream`, declared
    FlateDecode when `flate` (the caller deflated it)."""
    filters = b" /Filter /FlateDecode" if flate else b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d%s >>\nstream\n" % (len(stream), filters) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_stream(lines: list[str]) -> bytes:
    """A content stream showing `lines` (ASCII, no parentheses) top-down in 12 pt."""
    shown = b"".join(b"(%s) Tj T*\n" % line.encode("ascii") for line in lines)
    return b"BT /F1 12 Tf 14 TL 72 720 Td\n" + shown + b"ET\n"
