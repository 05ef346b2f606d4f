"""Chunker ``markdown-simple``, version ``1`` (DESIGN.md section 3).

Heading-aware, deterministic, and every chunk within the embedding model's input limit.

Input is the parser's (normalized) markdown: each page starts with a ``<!-- page N -->`` line,
headings are ``#``..``######`` lines, bullets are ``- `` lines, code is fenced with three
backticks. The chunker reads it line by line and emits chunks as it goes (a generator), so
apart from the input string itself memory holds only the chunk being built.

Rules:

- Blocks. The text is cut into blocks: a heading line; a run of consecutive non-blank lines
  (a paragraph or a list run); a fenced code block (blank lines inside it do not end it). A
  page marker ends the current block, is never part of any chunk text, and sets the page of
  the blocks after it (page 1 before the first marker).
- Headings. A heading starts a new chunk, and its own line is the first line of that chunk's
  text. Consecutive headings with no text between them stay together in one chunk (so that
  ``# Part`` / ``## Section`` / text gives one chunk, not a heading-only chunk). The full path
  of headings (outermost first, by ``#`` level; a heading closes every heading of the same or
  deeper level) is kept in ``meta["heading_path"]`` only; it is not prepended to later chunks.
  Titles in the path are cut to 200 characters.
- Packing. Blocks are added to the current chunk while its token estimate (sum of block
  tokens plus the ``"\\n\\n"`` separators) stays within ``target_tokens``; the first text block
  after a heading-only start may go up to ``max_tokens`` so a heading keeps its first paragraph.
  Blocks in a chunk are joined with a blank line.
- Oversized blocks. A block over ``max_tokens`` is cut into pieces of at most
  ``target_tokens``, preferring, within the last half of the piece, a blank line, then a sentence
  end or line break, then a space, and only then a hard cut at any character (so a 2 MB line
  with no spaces is cut at token-count boundaries). Pieces then pack like blocks.
- Bound. Every emitted chunk is counted exactly with ``count_tokens`` and is within
  ``max_tokens``; where the estimate was off, the chunk's blocks are re-packed with exact
  counts. ``meta["tokens"]`` is that exact count.
- No chunk is empty or whitespace-only.
- ``ord`` is 0-based and consecutive. ``page_start``/``page_end`` are the smallest and largest
  page of the blocks in the chunk.

Counting. Every count above is ``count_tokens`` of some string. A ``SubstringCounter`` (for
cl100k: ``docingest.pipeline.tokens.CL100K``) may answer the counts of a block's substrings and
of joined parts without counting them again; it must return exactly what ``count_tokens``
would, so it changes how fast chunks are cut, never where.

Cutting at characters needs ``count_tokens`` to be roughly monotone (a longer prefix has at
least as many tokens), which holds for BPE tokenizers and character or byte counts. A
``ValueError`` is raised if a single character counts more than ``max_tokens`` (with
cl100k that needs ``max_tokens < 4``); a character over ``target_tokens`` becomes a piece of
its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

CHUNKER_NAME = "markdown-simple"
CHUNKER_VERSION = "1"

CountTokens = Callable[[str], int]


class Spans(Protocol):
    def count(self, start: int, end: int) -> int:
        """``count_tokens(text[start:end])`` of the text these spans were made for."""
        ...


class SubstringCounter(Protocol):
    """Exact counts of substrings and joins, from counts already made (see the docstring)."""

    def spans(self, text: str) -> Spans | None: ...

    def joined(self, parts: Sequence[tuple[str, int]], separator: str) -> int:
        """``count_tokens(separator.join(texts))`` of ``(text, count_tokens(text))`` parts."""
        ...


@dataclass(frozen=True, slots=True)
class _Recount:
    """Counts by counting again: any ``count_tokens``, no assumptions."""

    count_tokens: CountTokens

    def spans(self, text: str) -> Spans:
        return _RecountSpans(text, self.count_tokens)

    def joined(self, parts: Sequence[tuple[str, int]], separator: str) -> int:
        if len(parts) == 1:
            return parts[0][1]
        return self.count_tokens(separator.join(text for text, _ in parts))


@dataclass(frozen=True, slots=True)
class _RecountSpans:
    text: str
    count_tokens: CountTokens

    def count(self, start: int, end: int) -> int:
        return self.count_tokens(self.text[start:end])


MAX_TITLE_CHARS = 200
_SEPARATOR = "\n\n"
_FILL = 0.85  # a hard-cut piece is good enough once it reaches this share of its limit
_WHOLE_BLOCK_FACTOR = 16  # blocks up to this many chars per max token are counted in one go

_PAGE_MARKER = re.compile(r"<!-- page (\d{1,9}) -->")
_HEADING = re.compile(r"[ \t]*(#{1,6})(?:[ \t]+(.*))?")
_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]*(?=\s)")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a document. ``meta`` has ``page_start``, ``page_end`` (int),
    ``heading_path`` (list of str, outermost first) and ``tokens`` (int)."""

    ord: int
    text: str
    meta: dict[str, object]


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    page: int
    heading: tuple[int, str] | None = None  # (level, title) for a heading line


@dataclass(frozen=True, slots=True)
class _Part:
    text: str
    tokens: int
    page: int


@dataclass(frozen=True, slots=True)
class _Draft:
    text: str
    tokens: int
    page_start: int
    page_end: int
    heading_path: list[str]


# --------------------------------------------------------------------------- blocks


def _iter_lines(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end == -1:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def _is_fence(line: str) -> bool:
    return line.lstrip(" \t").startswith("```")


def _take_block(lines: list[str], page: int) -> Iterator[_Block]:
    if lines:
        text = "\n".join(lines).strip()
        lines.clear()
        if text:
            yield _Block(text, page)


def _iter_blocks(markdown: str) -> Iterator[_Block]:
    page = 1
    lines: list[str] = []
    in_code = False
    for raw in _iter_lines(markdown):
        line = raw.rstrip()
        marker = _PAGE_MARKER.fullmatch(line.strip())
        if marker:
            yield from _take_block(lines, page)
            page = int(marker.group(1))
        elif _is_fence(line):
            if not in_code:
                yield from _take_block(lines, page)
            lines.append(line)
            if in_code:
                yield from _take_block(lines, page)
            in_code = not in_code
        elif in_code:
            lines.append(line)
        elif not line.strip():
            yield from _take_block(lines, page)
        elif heading := _HEADING.fullmatch(line):
            yield from _take_block(lines, page)
            title = (heading.group(2) or "").strip()[:MAX_TITLE_CHARS]
            yield _Block(line.strip(), page, (len(heading.group(1)), title))
        else:
            lines.append(line)
    yield from _take_block(lines, page)


# --------------------------------------------------------------------------- cutting


def _fit_prefix(text: str, start: int, limit: int, spans: Spans, guess: int) -> tuple[int, int]:
    """``(e, count(text[start:e]))`` with the count within ``limit``: the whole rest of the
    text if it fits, else a prefix filling at least ``_FILL`` of the limit where one was found;
    ``(start, 0)`` when not even one character fits.

    Searches by proportional estimates clamped to the middle half of the open interval, so the
    number of ``count`` calls is logarithmic and each call sees about one piece of text.
    """
    n = len(text)
    lo, hi = start, n + 1  # text[start:lo] fits; text[start:hi] does not (n + 1: unknown)
    lo_tokens = 0
    end = min(n, start + max(1, guess))
    while True:
        tokens = spans.count(start, end)
        if tokens <= limit:
            lo, lo_tokens = end, tokens
            if end == n or tokens >= limit * _FILL:
                break
        else:
            hi = end
        if hi - lo <= 1:
            break
        length = end - start
        estimate = start + int(length * limit * 0.95 / max(tokens, 1))
        if hi > n:  # still growing: at most 4x per step, at least one char
            end = min(n, max(lo + 1, min(estimate, start + 4 * length)))
        else:
            quarter = (hi - lo) // 4
            end = max(lo + max(1, quarter), min(estimate, hi - max(1, quarter)))
    return lo, lo_tokens


def _best_cut(text: str, start: int, end: int) -> int:
    """A cut position in ``(start, end]``: a natural break in the last half if any."""
    half = start + (end - start) // 2
    pos = text.rfind(_SEPARATOR, half, end)
    if pos > start:
        return pos
    sentence = max((m.end() for m in _SENTENCE_END.finditer(text, half, end)), default=-1)
    line = text.rfind("\n", half, end)
    best = max(sentence, line)
    if best > start:
        return best
    space = max(text.rfind(" ", half, end), text.rfind("\t", half, end))
    return space if space > start else end


def _split_text(text: str, limit: int, hard_limit: int, spans: Spans) -> Iterator[tuple[str, int]]:
    """Pieces of ``text`` (stripped, non-empty) of at most ``limit`` tokens each, or of one
    character up to ``hard_limit`` tokens where a single character is over ``limit``."""
    pos, n = 0, len(text)
    guess = limit * 4
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos == n:
            return
        end, end_tokens = _fit_prefix(text, pos, limit, spans, guess)
        if end == pos:  # one character is over the target: give it up to the hard limit
            end, end_tokens = pos + 1, spans.count(pos, pos + 1)
            if end_tokens > hard_limit:
                raise ValueError("a single character has more tokens than max_tokens")
            yield text[pos], end_tokens
            pos = end
            continue
        cut = _best_cut(text, pos, end) if end < n else end
        piece = text[pos:cut].rstrip()
        same = cut == end and len(piece) == end - pos
        tokens = end_tokens if same else spans.count(pos, pos + len(piece))
        if tokens > limit:  # a shorter text counted more: fall back to the checked prefix
            cut, piece, tokens = end, text[pos:end], end_tokens
        guess = max(1, end - pos)
        pos = cut
        yield piece, tokens


def _block_pieces(
    text: str, counter: SubstringCounter, recount: _Recount, target: int, max_tokens: int
) -> Iterator[tuple[str, int]]:
    if len(text) <= max_tokens * _WHOLE_BLOCK_FACTOR:
        # what `_fit_prefix` would count first; when the whole block does not fit, the prefix
        # it would go on to search for is never used, so it is not searched for
        spans = counter.spans(text) or recount.spans(text)
        tokens = spans.count(0, len(text))
        fits = tokens <= max_tokens
    else:  # not read whole at once: a huge block is only ever counted a piece at a time
        spans = recount.spans(text)
        end, tokens = _fit_prefix(text, 0, max_tokens, spans, max_tokens * _WHOLE_BLOCK_FACTOR)
        fits = end == len(text)
    if fits:
        yield text, tokens
    else:
        yield from _split_text(text, target, max_tokens, spans)


# --------------------------------------------------------------------------- packing


class _Packer:
    def __init__(
        self, count: CountTokens, counter: SubstringCounter, target: int, max_tokens: int
    ) -> None:
        self._joined = counter.joined
        self._target = target
        self._max = max_tokens
        self._sep = count(_SEPARATOR)
        self._parts: list[_Part] = []
        self._estimate = 0
        self._has_body = False
        self._path: list[str] = []

    def add(self, part: _Part, path: list[str], *, is_heading: bool) -> Iterator[_Draft]:
        if self._parts:
            total = self._estimate + self._sep + part.tokens
            if is_heading:
                fits = not self._has_body and total <= self._max
            elif self._has_body:
                fits = total <= self._target
            else:
                fits = total <= self._max
            if fits:
                self._estimate = total
            else:
                yield from self.flush()
        if not self._parts:
            self._estimate = part.tokens
        self._parts.append(part)
        if is_heading or len(self._parts) == 1:
            self._path = list(path)
        self._has_body = self._has_body or not is_heading

    def flush(self) -> Iterator[_Draft]:
        parts, self._parts, self._has_body = self._parts, [], False
        if not parts:
            return
        text = _SEPARATOR.join(p.text for p in parts)
        tokens = self._join_count(parts)
        if tokens <= self._max:
            yield self._draft(parts, text, tokens)
            return
        # The estimate was off: re-pack with exact counts. Every single part fits on its own.
        group, group_tokens = [parts[0]], parts[0].tokens
        for part in parts[1:]:
            candidate_tokens = self._join_count([*group, part])
            if candidate_tokens <= self._max:
                group, group_tokens = [*group, part], candidate_tokens
            else:
                yield self._draft(group, _SEPARATOR.join(p.text for p in group), group_tokens)
                group, group_tokens = [part], part.tokens
        yield self._draft(group, _SEPARATOR.join(p.text for p in group), group_tokens)

    def _join_count(self, parts: list[_Part]) -> int:
        return self._joined([(p.text, p.tokens) for p in parts], _SEPARATOR)

    def _draft(self, parts: list[_Part], text: str, tokens: int) -> _Draft:
        pages = [p.page for p in parts]
        return _Draft(text, tokens, min(pages), max(pages), list(self._path))


# --------------------------------------------------------------------------- public


def iter_chunks(
    markdown: str,
    *,
    count_tokens: CountTokens,
    target_tokens: int = 400,
    max_tokens: int = 512,
    counter: SubstringCounter | None = None,
) -> Iterator[Chunk]:
    """Chunk ``markdown`` lazily (see the module docstring for the rules).

    ``count_tokens`` is the embedding model's tokenizer (``docingest.pipeline.tokens
    .count_tokens`` for cl100k models), ``counter`` an optional faster way to the same counts
    (``docingest.pipeline.tokens.CL100K`` for cl100k). Requires
    ``1 <= target_tokens <= max_tokens``.
    """
    if not 1 <= target_tokens <= max_tokens:
        raise ValueError("need 1 <= target_tokens <= max_tokens")
    recount = _Recount(count_tokens)
    counter = counter or recount
    packer = _Packer(count_tokens, counter, target_tokens, max_tokens)
    headings: list[tuple[int, str]] = []
    ord_ = 0
    for block in _iter_blocks(markdown):
        if block.heading is not None:
            level = block.heading[0]
            headings = [h for h in headings if h[0] < level]
            headings.append(block.heading)
        path = [title for _, title in headings]
        pieces = _block_pieces(block.text, counter, recount, target_tokens, max_tokens)
        for i, (text, tokens) in enumerate(pieces):
            part = _Part(text, tokens, block.page)
            is_heading = block.heading is not None and i == 0
            for draft in packer.add(part, path, is_heading=is_heading):
                yield _chunk(ord_, draft)
                ord_ += 1
    for draft in packer.flush():
        yield _chunk(ord_, draft)
        ord_ += 1


def has_page_markers(markdown: str) -> bool:
    """Whether the parser marked its pages. Without markers every chunk is on "page 1" by the
    rule above, which says nothing (LlamaParse's markdown joins pages without numbers)."""
    return any(_PAGE_MARKER.fullmatch(line.strip()) for line in _iter_lines(markdown))


def _chunk(ord_: int, draft: _Draft) -> Chunk:
    meta: dict[str, object] = {
        "page_start": draft.page_start,
        "page_end": draft.page_end,
        "heading_path": draft.heading_path,
        "tokens": draft.tokens,
    }
    return Chunk(ord_, draft.text, meta)


def chunk_markdown(
    markdown: str,
    *,
    count_tokens: CountTokens,
    target_tokens: int = 400,
    max_tokens: int = 512,
    counter: SubstringCounter | None = None,
) -> list[Chunk]:
    """All chunks of ``markdown`` as a list (see :func:`iter_chunks`)."""
    return list(
        iter_chunks(
            markdown,
            count_tokens=count_tokens,
            target_tokens=target_tokens,
            max_tokens=max_tokens,
            counter=counter,
        )
    )
