"""Decompression-bomb guard for hostile PDFs, run before PDFium sees the file.

A PDF can carry a FlateDecode stream of a few hundred KB that inflates to gigabytes
(zeros compress about 1000:1). PDFium would inflate it in full while rendering or
extracting; the parse child's RLIMIT_AS and time limit would stop it eventually, but
only as a generic `parse_limit`. This guard inflates every zlib stream of the file
incrementally, counting bytes without keeping them (memory stays at about one MiB), and
refuses the document as `decompression_bomb` once the total passes
max(MIN_BUDGET_BYTES, MAX_RATIO x file size).

It also counts what is *drawn*, not only what is stored: a form XObject of one page of text
drawn 2,000 times on each of 10 pages (a 3.6 KB file) makes PDFium extract 8 million
characters per page, seconds of CPU each, and thousands of chunks. Every content stream's
`/Name Do` operators are counted; a name resolves through the file's `/XObject << ... >>`
dictionaries (object streams included) to form XObjects, whose own drawn size counts once per
draw, recursively (a name no dictionary maps counts as the largest form: conservative). The
drawn total must stay within max(MIN_DRAWN_BUDGET_BYTES, MAX_DRAWN_RATIO x file size), else
`decompression_bomb` before PDFium loads a page. Images drawn many times cost nothing here
(they are never decoded for text).

Scope: streams whose first filter is FlateDecode (zlib) or that have no filter. Streams
encoded with another filter first (ASCIIHex, JBIG2, DCT ...) are not inflated here; PDFium's
own limits, the text caps and the child's rlimits still hold for them.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from docingest.domain.errors import ErrorCode, ParseError

__all__ = [
    "MAX_DRAWN_RATIO",
    "MAX_RATIO",
    "MIN_BUDGET_BYTES",
    "MIN_DRAWN_BUDGET_BYTES",
    "check_decompression",
]

#: inflated bytes allowed per byte of file (real insurance PDFs stay far below 50)
MAX_RATIO: Final = 200
#: ... but never less than this, so small files with a few big images pass
MIN_BUDGET_BYTES: Final = 256 * 1024 * 1024
#: drawn content bytes allowed per byte of file, and the floor (corpus: at most 14 x)
MAX_DRAWN_RATIO: Final = 200
MIN_DRAWN_BUDGET_BYTES: Final = 16 * 1024 * 1024
_STEP: Final = 1 << 20
_STREAM_RE: Final = re.compile(rb"stream\r?\n")
_END: Final = b"endstream"
_OBJ_RE: Final = re.compile(rb"(\d+)\s+\d+\s+obj\b")
_NAME: Final = rb"/([^\s/<>\[\]()%{}]+)"
_DO_RE: Final = re.compile(_NAME + rb"\s*Do\b")
_XOBJECTS_RE: Final = re.compile(rb"/XObject\s*<<(.*?)>>", re.DOTALL)
_NAME_REF_RE: Final = re.compile(_NAME + rb"\s+(\d+)\s+\d+\s+R")
_CONTENTS_RE: Final = re.compile(rb"/Contents\s*(?:(\d+)\s+\d+\s+R|\[([^\]]*)\])")
_REF_RE: Final = re.compile(rb"(\d+)\s+\d+\s+R")
_CARRY: Final = 128  # bytes kept between inflated pieces so a split `/Name Do` still counts
_OBJSTM_KEEP: Final = 8 << 20  # inflated object streams scanned for resource names
_MAX_DEPTH: Final = 32


@dataclass
class _Stream:
    size: int = 0
    form: bool = False
    draws: Counter[bytes] = field(default_factory=Counter)


@dataclass
class _Drawing:
    """What the file's content streams draw, gathered while inflating them."""

    streams: dict[int, _Stream] = field(default_factory=dict)
    names: dict[bytes, set[int]] = field(default_factory=dict)
    uses: Counter[int] = field(default_factory=Counter)  # pages naming a content stream

    def add_names(self, text: bytes) -> None:
        for group in _XOBJECTS_RE.finditer(text):
            for name, ref in _NAME_REF_RE.findall(group.group(1)):
                self.names.setdefault(name, set()).add(int(ref))
        for single, array in _CONTENTS_RE.findall(text):
            refs = [single] if single else _REF_RE.findall(array)
            self.uses.update(int(r) for r in refs)

    def total(self, budget: int) -> int:
        """Drawn bytes of every non-form content stream, forms expanded per draw (capped
        just past `budget`, so a billion laughs stops early)."""
        memo: dict[int, int] = {}
        forms = [n for n, st in self.streams.items() if st.form]

        def drawn(num: int, depth: int) -> int:
            if num in memo:
                return memo[num]
            memo[num] = 0  # a cycle draws nothing more
            stream = self.streams.get(num)
            if stream is None or depth > _MAX_DEPTH:
                return 0
            size = stream.size
            for name, count in stream.draws.items():
                targets = self.names.get(name)
                candidates = [t for t in targets if t in self.streams] if targets else forms
                each = max((drawn(t, depth + 1) for t in candidates), default=0)
                size = min(budget + 1, size + count * each)
            memo[num] = size
            return size

        total = 0
        for num, stream in self.streams.items():
            if not stream.form:  # a page's content, drawn once per page naming it
                total = min(budget + 1, total + max(1, self.uses[num]) * drawn(num, 0))
        return total


def check_decompression(data: bytes) -> int:
    """Total inflated bytes of the file's zlib streams; ParseError(DECOMPRESSION_BOMB)
    as soon as it passes the budget, or when the content drawn (forms expanded per draw)
    passes its own budget (the message carries sizes only)."""
    budget = max(MIN_BUDGET_BYTES, MAX_RATIO * len(data))
    drawn_budget = max(MIN_DRAWN_BUDGET_BYTES, MAX_DRAWN_RATIO * len(data))
    drawing = _Drawing()
    drawing.add_names(data)
    total = 0
    view = memoryview(data)
    pos = 0
    while (match := _STREAM_RE.search(data, pos)) is not None:
        end = data.find(_END, match.end())
        if end < 0:
            break
        total += _scan_stream(data, view, match.start(), match.end(), end, budget - total, drawing)
        pos = end + len(_END)
        if total > budget:
            raise ParseError(
                ErrorCode.DECOMPRESSION_BOMB,
                f"compressed streams inflate past {budget} bytes ({len(data)}-byte file)",
            )
    if drawing.total(drawn_budget) > drawn_budget:
        raise ParseError(
            ErrorCode.DECOMPRESSION_BOMB,
            f"pages draw more than {drawn_budget} bytes of content ({len(data)}-byte file)",
        )
    return total


def _scan_stream(
    data: bytes,
    view: memoryview,
    keyword: int,
    body_start: int,
    body_end: int,
    allowance: int,
    drawing: _Drawing,
) -> int:
    """Inflate one stream (counting), noting its draws; returns its inflated size."""
    head = data.rfind(b"obj", max(0, keyword - 4096), keyword)
    obj = None
    if head >= 0:
        found = list(_OBJ_RE.finditer(data, max(0, head - 32), head + 3))
        obj = int(found[-1].group(1)) if found else None
    header = data[head + 3 : keyword] if head >= 0 else b""
    body = view[body_start:body_end]
    if b"/Image" in header:
        return _inflated_size(body, allowance)
    stream = _Stream(form=b"/Form" in header)
    objstm = b"/ObjStm" in header
    kept: list[bytes] = []
    tail = b""

    def sink(piece: bytes) -> None:
        nonlocal tail
        window = tail + piece
        for m in _DO_RE.finditer(window):
            if m.end() > len(tail):
                stream.draws[m.group(1)] += 1
        tail = window[-_CARRY:]
        if objstm and sum(map(len, kept)) < _OBJSTM_KEEP:
            kept.append(piece)

    if b"/Filter" in header:
        size = _inflated_size(body, allowance, sink)
    else:  # not compressed: the body is the content
        size = len(body)
        sink(bytes(body))
    stream.size = size
    if obj is not None:
        drawing.streams[obj] = stream
    if kept:
        drawing.add_names(b"".join(kept))
    return size if b"/Filter" in header else 0


def _inflated_size(
    body: memoryview, allowance: int, sink: Callable[[bytes], None] | None = None
) -> int:
    """Bytes a zlib stream inflates to, counting past `allowance` by at most one step;
    0 for data that is not zlib (another filter, or not compressed). `sink` sees each
    inflated piece (which is then dropped)."""
    inflater = zlib.decompressobj()
    size = 0
    pending: bytes | memoryview = body
    try:
        while pending and not inflater.eof and size <= allowance:
            piece = inflater.decompress(pending, _STEP)
            size += len(piece)
            if sink is not None:
                sink(piece)
            pending = inflater.unconsumed_tail
    except zlib.error:
        pass  # not zlib, or damaged: count what inflated so far
    return size
