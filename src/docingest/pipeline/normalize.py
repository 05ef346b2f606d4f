"""Markdown normalization for ``parsed_sha256`` (DESIGN.md section 3).

``normalize_markdown`` is a pure, idempotent function: ``normalize_markdown(normalize_markdown(x))
== normalize_markdown(x)`` for every string ``x``. Two parses of the same PDF that differ only in
whitespace, invisible characters, link targets or bullet glyphs normalize to the same text and
so to the same ``parsed_sha256``.

Rules, in the order they are applied:

1. Characters (everywhere, code included):
   ``\\r\\n`` and ``\\r`` become ``\\n``; the other characters Python treats as line boundaries
   (VT, FF, FS, GS, RS, NEL, U+2028, U+2029) also become ``\\n`` (form feeds are page breaks
   in text extracted from PDFs, dropping them would glue words together). Zero-width and other
   non-printing characters are dropped: every character of Unicode category Cc (control) or Cf
   (format: U+200B..U+200F, U+2060, U+FEFF, the soft hyphen U+00AD, bidi controls, ...) and Cs
   (lone surrogates), except ``\\n`` and ``\\t``. Every other space separator (category Zs:
   no-break space, em space, ideographic space, ...) becomes an ASCII space. Categories come
   from the running Python's ``unicodedata``.
2. Lines (everywhere): trailing spaces and tabs are removed.
3. Fenced code blocks: a line whose first non-blank characters are three backticks opens a
   block and the next such line closes it (an unclosed block runs to the end; ``~~~`` fences
   and indented code blocks are not recognized). Inside, and on
   the fence lines themselves, text is kept as is apart from rules 1, 2 and 6: tabs, runs of
   spaces, indentation, ``#``, bullets and links are left alone.
4. Outside code, every line: tabs become spaces, runs of spaces collapse to one, images
   ``![alt](url)`` become ``![img]`` and links ``[text](url)`` become ``[text]``. Brackets are
   matched like parentheses (so link text may contain balanced brackets and nested images:
   ``[![alt](img)](url)`` becomes ``[![img]]``); the destination is a parenthesized group right
   after the closing bracket, with balanced parentheses inside and no space, tab or bracket
   (as in CommonMark, where a bare destination has no spaces; link titles are not recognized).
   Chained groups are all removed (``[a](b)(c)`` becomes ``[a]``). One left-to-right pass,
   linear in the line length.
5. Outside code, by kind of line:
   - heading (``#`` to ``######`` not followed by another ``#``, after optional indentation):
     ``## Title`` with the indentation removed and exactly one space after the hashes
     (``##Title`` -> ``## Title``, ``#   T`` -> ``# T``); an empty heading is just the hashes.
     This applies to every line that starts with one to six ``#``, so ``#1 rated`` becomes the
     heading ``# 1 rated``; a line of seven or more ``#`` is plain text;
   - list item: a bullet ``-``, ``*``, ``+``, ``•``, ``◦``, ``▪``, ``●``, ``‣`` or an ordered
     marker ``1.`` / ``1)`` (up to 9 digits, kept as written), followed by a space or tab and
     text. Bullets become ``-``. Indentation becomes two spaces per nesting level. The level
     comes from the original indentation (a tab counts as 4 columns) relative to the enclosing
     items, the way Markdown nests lists: an item indented deeper than the previous open item
     is one level deeper (however many columns deeper: 2-space and 4-space lists both come out
     as 2 spaces per level); an item at or left of an open item's indentation closes the
     deeper items. The first item of a list is level 0 whatever its indentation. A list is
     closed by any non-blank line that is not a list item (heading, paragraph line, code
     fence, page marker); blank lines between items do not close it;
   - any other line: leading indentation is removed (runs of spaces are collapsed anyway, and
     Markdown ignores paragraph indentation). Page markers ``<!-- page N -->`` are plain lines
     and come out unchanged.
6. Blank lines (everywhere): at most one blank line in a row; blank lines at the start and the
   end of the document are removed.
7. The result ends with exactly one ``\\n``; a document with no visible content normalizes to
   the empty string ``""`` (not ``"\\n"``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator

_LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n\t]")

_FENCE = "```"
_HEADING = re.compile(r"[ \t]*(#{1,6})(?!#)[ \t]*(.*)")
_LIST_ITEM = re.compile(r"([ \t]*)([-*+•◦▪●‣]|\d{1,9}[.)])[ \t]+(\S.*)")
_BULLETS = frozenset("-*+•◦▪●‣")
_SPACES = re.compile(r" {2,}")
_NOT_IN_DESTINATION = frozenset(" \t[]")
_TAB_WIDTH = 4


@functools.lru_cache(maxsize=4096)
def _replace_char(ch: str) -> str:
    if ch in _LINE_BREAKS:
        return "\n"
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Cs"):
        return ""
    if category == "Zs":
        return " "
    return ch


def _clean_chars(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _NOT_PLAIN.sub(lambda m: _replace_char(m.group()), text)


def _is_fence(line: str) -> bool:
    return line.lstrip(" \t").startswith(_FENCE)


def _destination_end(line: str, start: int) -> int:
    """End of the link destination ``(...)`` opening at ``line[start]``, or -1."""
    depth = 0
    for pos in range(start, len(line)):
        ch = line[pos]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        elif ch in _NOT_IN_DESTINATION:
            return -1
    return -1


def _skip_destinations(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] == "(":
        end = _destination_end(line, pos)
        if end < 0:
            break
        pos = end
    return pos


def _rewrite_links(line: str) -> str:
    """``![alt](url)`` -> ``![img]`` and ``[text](url)`` -> ``[text]`` in one pass."""
    if "](" not in line:
        return line
    out: list[str] = []
    open_brackets: list[tuple[int, bool]] = []  # (index in out, preceded by "!")
    pos = 0
    while pos < len(line):
        ch = line[pos]
        if ch == "[":
            open_brackets.append((len(out), bool(out) and out[-1] == "!"))
            out.append(ch)
            pos += 1
        elif ch == "]" and open_brackets:
            start, is_image = open_brackets.pop()
            after = _skip_destinations(line, pos + 1)
            if is_image and after > pos + 1:
                del out[start:]
                out.append("[img]")
            else:
                out.append("]")
            pos = after
        else:
            out.append(ch)
            pos += 1
    return "".join(out)


def _inline(text: str) -> str:
    """Tabs, space runs, images and links, for text outside code."""
    if "\t" in text:
        text = text.replace("\t", " ")
    if "  " in text:
        text = _SPACES.sub(" ", text)
    return _rewrite_links(text)


def _indent_width(indent: str) -> int:
    return sum(_TAB_WIDTH if ch == "\t" else 1 for ch in indent)


class _ListNesting:
    """Maps original indentation widths of list items to nesting levels."""

    def __init__(self) -> None:
        self._open: list[int] = []  # indentation widths of the open items, increasing

    def reset(self) -> None:
        self._open.clear()

    def level(self, width: int) -> int:
        while self._open and width < self._open[-1]:
            self._open.pop()
        if not self._open or width > self._open[-1]:
            self._open.append(width)
        return len(self._open) - 1


def _normalize_text_line(line: str, nesting: _ListNesting) -> str:
    """One non-blank line outside code (already character-cleaned and right-stripped)."""
    heading = _HEADING.fullmatch(line)
    if heading:
        nesting.reset()
        title = _inline(heading.group(2)).strip()
        return f"{heading.group(1)} {title}" if title else heading.group(1)
    item = _LIST_ITEM.fullmatch(line)
    if item:
        level = nesting.level(_indent_width(item.group(1)))
        marker = "-" if item.group(2) in _BULLETS else item.group(2)
        return f"{'  ' * level}{marker} {_inline(item.group(3)).strip()}"
    nesting.reset()
    return _inline(line).strip()


def _normalized_lines(text: str) -> Iterator[str]:
    nesting = _ListNesting()
    in_code = False
    for raw in text.split("\n"):
        line = raw.rstrip(" \t")
        if _is_fence(line):
            in_code = not in_code
            nesting.reset()
            yield line
        elif in_code or not line:
            yield line
        else:
            yield _normalize_text_line(line, nesting)


def normalize_markdown(md: str) -> str:
    """Normalize parser markdown as described in the module docstring. Idempotent."""
    out: list[str] = []
    blank_pending = False
    for line in _normalized_lines(_clean_chars(md)):
        if not line:
            blank_pending = bool(out)
            continue
        if blank_pending:
            out.append("")
            blank_pending = False
        out.append(line)
    return "\n".join(out) + "\n" if out else ""
