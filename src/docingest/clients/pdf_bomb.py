"""Decompression-bomb guard for hostile PDFs, run before PDFium sees the file.

A PDF can carry a FlateDecode stream of a few hundred KB that inflates to gigabytes
(zeros compress about 1000:1). PDFium would inflate it in full while rendering or
extracting; the parse child's RLIMIT_AS and time limit would stop it eventually, but
only as a generic `parse_limit`. This guard inflates every zlib stream of the file
incrementally, counting bytes without keeping them (memory stays at about one MiB), and
refuses the document as `decompression_bomb` once the total passes
max(MIN_BUDGET_BYTES, MAX_RATIO x file size).

Scope: streams whose first filter is FlateDecode (zlib), the usual bomb. Streams encoded
with another filter first (ASCIIHex, JBIG2, DCT ...) are not inflated here; PDFium's own
limits and the child's rlimits still hold for them.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from docingest.domain.errors import ErrorCode, ParseError

__all__ = ["MAX_RATIO", "MIN_BUDGET_BYTES", "check_decompression"]

#: inflated bytes allowed per byte of file (real insurance PDFs stay far below 50)
MAX_RATIO: Final = 200
#: ... but never less than this, so small files with a few big images pass
MIN_BUDGET_BYTES: Final = 256 * 1024 * 1024
_STEP: Final = 1 << 20
_STREAM_RE: Final = re.compile(rb"stream\r?\n")
_END: Final = b"endstream"


def check_decompression(data: bytes) -> int:
    """Total inflated bytes of the file's zlib streams; ParseError(DECOMPRESSION_BOMB)
    as soon as it passes the budget (the message carries sizes only)."""
    budget = max(MIN_BUDGET_BYTES, MAX_RATIO * len(data))
    total = 0
    view = memoryview(data)
    pos = 0
    while (match := _STREAM_RE.search(data, pos)) is not None:
        end = data.find(_END, match.end())
        if end < 0:
            break
        total += _inflated_size(view[match.end() : end], budget - total)
        pos = end + len(_END)
        if total > budget:
            raise ParseError(
                ErrorCode.DECOMPRESSION_BOMB,
                f"compressed streams inflate past {budget} bytes ({len(data)}-byte file)",
            )
    return total


def _inflated_size(body: memoryview, allowance: int) -> int:
    """Bytes a zlib stream inflates to, counting past `allowance` by at most one step;
    0 for data that is not zlib (another filter, or not compressed)."""
    inflater = zlib.decompressobj()
    size = 0
    pending: bytes | memoryview = body
    try:
        while pending and not inflater.eof and size <= allowance:
            size += len(inflater.decompress(pending, _STEP))
            pending = inflater.unconsumed_tail
    except zlib.error:
        pass  # not zlib, or damaged: count what inflated so far
    return size
