"""Markdown from the lines PDFium gave (clients/pdf_markdown.py): headings by font size
rank against the body size (the size carrying the most letters/digits), running headers
left as text, paragraphs from baseline gaps, markdown-special characters escaped. Pure:
no PDFium here, only the extracted `Page`s."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

# --- thresholds (see docs/_parser_decision.md) ------------------------------------------
MAX_HEADING_CHARS = 120
HEADING_MIN_RATIO = 1.15
HEADING_MIN_DELTA_PT = 1.0
#: heading sizes within this factor of the level's largest size share the level
HEADING_LEVEL_BAND = 0.90
MAX_HEADING_LEVEL = 3
#: a size whose candidate lines carry more than this share of all letters/digits is body
MAX_HEADING_SHARE = 0.15
#: a candidate repeated on at least max(3, 5 % of pages) pages is a running header
MIN_RUNNING_HEADER_PAGES = 3
RUNNING_HEADER_SHARE = 0.05
#: baseline gap (in units of the font size) above which a new paragraph starts
PARAGRAPH_GAP = 1.6
_SENTENCE_END = (".", ",", ";")


@dataclass(slots=True)
class Line:
    text: str
    size: float  # effective font size in points, 0.0 when unknown
    y: float | None  # baseline of the first sampled character
    alnum: int
    bullet: bool


@dataclass(slots=True)
class Page:
    lines: list[Line]
    alnum: int
    nonspace: int


# --- rendering ---------------------------------------------------------------------------


def render(pages: list[Page]) -> str:
    body = _body_size(pages)
    levels, running = _heading_plan(pages, body)
    out: list[str] = []
    for number, page in enumerate(pages, start=1):
        out.append(f"<!-- page {number} -->")
        out.append("")
        block = _render_page(page, levels, running, body)
        if block:
            out.extend(block)
            out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _body_size(pages: list[Page]) -> float:
    weights: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            if line.size > 0:
                weights[line.size] += line.alnum
    if not weights:
        return 0.0
    return max(weights.items(), key=lambda kv: (kv[1], -kv[0]))[0]


def _is_heading_candidate(line: Line, body: float) -> bool:
    if body <= 0 or line.size <= 0 or line.bullet:
        return False
    if line.size < body * HEADING_MIN_RATIO or line.size - body < HEADING_MIN_DELTA_PT:
        return False
    text = line.text
    if len(text) > MAX_HEADING_CHARS or text.endswith(_SENTENCE_END):
        return False
    return sum(1 for ch in text if ch.isalpha()) >= 2


def _heading_plan(pages: list[Page], body: float) -> tuple[dict[float, int], set[str]]:
    """Map heading font sizes to levels; also return texts repeated as running headers.

    A size is a heading size only if its lines carry a small share of the document's
    letters/digits (otherwise it is a second body font, e.g. bold-ish entry names in a
    directory). A candidate text repeated on many pages is a running header, not a heading.
    """
    total = sum(page.alnum for page in pages) or 1
    candidates = [
        [line for line in page.lines if _is_heading_candidate(line, body)] for page in pages
    ]
    seen_on: Counter[str] = Counter()
    for lines in candidates:
        seen_on.update({line.text for line in lines})
    repeat_limit = max(MIN_RUNNING_HEADER_PAGES, math.ceil(RUNNING_HEADER_SHARE * len(pages)))
    running = {text for text, count in seen_on.items() if count >= repeat_limit}
    share: Counter[float] = Counter()
    for lines in candidates:
        for line in lines:
            if line.text not in running:
                share[line.size] += line.alnum
    sizes = sorted((s for s, n in share.items() if n <= MAX_HEADING_SHARE * total), reverse=True)
    levels: dict[float, int] = {}
    level = 0
    band_top = math.inf
    for size in sizes:
        if size < band_top * HEADING_LEVEL_BAND:
            level += 1
            band_top = size
        levels[size] = min(level, MAX_HEADING_LEVEL)
    return levels, running


def _render_page(page: Page, levels: dict[float, int], running: set[str], body: float) -> list[str]:
    out: list[str] = []
    prev: Line | None = None
    prev_level = 0
    pending_bullet = False
    for line in page.lines:
        level = 0
        if line.size in levels and line.text not in running and _is_heading_candidate(line, body):
            level = levels[line.size]
        if not line.text:  # a bullet glyph alone on its line: attach to the next line
            pending_bullet = pending_bullet or line.bullet
            continue
        bullet = line.bullet or pending_bullet
        pending_bullet = False
        if level and prev is not None and prev_level == level and not _gap_breaks(prev, line, body):
            out[-1] = f"{out[-1]} {line.text}"  # heading wrapped over two lines
            prev = line
            continue
        if out and (level or prev_level or _gap_breaks(prev, line, body)):
            out.append("")
        if level:
            out.append(f"{'#' * level} {line.text}")
        elif bullet:
            out.append(f"- {line.text}")
        else:
            out.append(_escape(line.text))
        prev, prev_level = line, level
    return out


def _gap_breaks(prev: Line | None, line: Line, body: float) -> bool:
    if prev is None or prev.y is None or line.y is None:
        return False
    size = max(prev.size, line.size, body) or 10.0
    gap = prev.y - line.y
    return gap > PARAGRAPH_GAP * size or gap < -0.5 * size


def _escape(text: str) -> str:
    """Keep body text from being read as markdown structure (or as a page marker)."""
    if text[0] in "#<>" or (len(text) >= 3 and not text.strip("-=_*")):
        return "\\" + text
    return text
