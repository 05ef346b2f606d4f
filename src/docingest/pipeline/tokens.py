"""Token counting with OpenAI's ``cl100k_base`` vocabulary, fully offline.

The BPE ranks file ships inside this package (``pipeline/data/cl100k_base.tiktoken``, the
file OpenAI publishes for tiktoken, MIT) and is checked against OpenAI's published sha256
before use, so nothing is ever downloaded and no third-party repackaging is trusted. The
encoding is built lazily on first use and cached for the life of the process.

Special-token strings such as ``<|endoftext|>`` in document text are counted as ordinary text
(``encode_ordinary``): a document can never smuggle control tokens into an embedding request,
and counting never raises on them.

The chunker asks for the counts of many overlapping pieces of one text (prefixes while it
looks for a cut, chunks joined from counted parts). ``CL100K`` answers those from one
encoding of the text, exactly, using where the split pattern must cut (see ``_CUT``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources

import numpy as np
import numpy.typing as npt
import tiktoken

ENCODING_NAME = "cl100k_base"
BPE_FILE = "cl100k_base.tiktoken"
#: the sha256 tiktoken itself expects of OpenAI's published cl100k_base file
BPE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# tiktoken's cl100k_base split pattern and special tokens (tiktoken_ext/openai_public.py)
_PAT_STR = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


def load_ranks(data: bytes) -> dict[bytes, int]:
    """The mergeable ranks of a tiktoken BPE file, refused unless it is the published one."""
    if hashlib.sha256(data).hexdigest() != BPE_SHA256:
        raise ValueError(f"{BPE_FILE} does not match its published sha256")
    return {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }


@functools.lru_cache(maxsize=1)
def _ranks() -> dict[bytes, int]:
    return load_ranks(resources.files("docingest.pipeline").joinpath("data", BPE_FILE).read_bytes())


@functools.lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The cached offline encoding (built on first call, about 0.3 s)."""
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=_PAT_STR,
        mergeable_ranks=_ranks(),
        special_tokens=_SPECIAL_TOKENS,
    )


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token strings count as plain text)."""
    if not text:
        return 0
    return len(get_encoding().encode_ordinary(text))


# --------------------------------------------------------------------------- substrings

# Where the split pattern must cut, whatever surrounds the two characters: after an ASCII
# letter followed by an ASCII non-letter, and after an ASCII digit followed by an ASCII
# non-digit (the end of a match of `_CUT`). Every piece the pattern can match that holds a
# letter ends with that letter (`\p{L}++` and the contractions are possessive runs of
# letters), and the only piece that holds a digit is a run of digits, so no piece spans such
# a pair, in any text that holds it. The pattern looks only forward, one character past a
# run at most, so the pieces on either side are the pieces of that side alone: for a text t
# and such a position h, tokens(t) == tokens(t[:h]) + tokens(t[h:]). ASCII only: Python's
# and the tokenizer's Unicode tables need not be the same version, ASCII's classes never
# change.
_CUT = re.compile(r"[A-Za-z](?=[\x00-\x40\x5b-\x60\x7b-\x7f])|[0-9](?=[\x00-\x2f\x3a-\x7f])")
_SCAN = 64  # how far to look for a cut position before counting the whole span instead


def _first_cut(text: str, start: int, end: int) -> int | None:
    """The first cut position in ``[start, end]`` of ``text`` (``start`` itself when it is
    0 or a cut), looking at most ``_SCAN`` characters on."""
    if start == 0:
        return 0
    match = _CUT.search(text, start - 1, min(end + 1, start + _SCAN, len(text)))
    return match.end() if match and match.end() <= end else None


def _last_cut(text: str, start: int, end: int) -> int | None:
    """The last cut position in ``[start, end]`` of ``text`` (``end`` itself when it is the
    text's end or a cut), looking at most ``_SCAN`` characters back."""
    if end == len(text):
        return end
    found = None
    for match in _CUT.finditer(text, max(start - 1, end - _SCAN, 0), end + 1):
        if match.end() <= end:
            found = match.end()
    return found if found is not None and found >= start else None


@functools.lru_cache(maxsize=1)
def _token_bytes() -> npt.NDArray[np.int64]:
    """Length in bytes of every ordinary token, by id."""
    lengths = np.zeros(max(_ranks().values()) + 1, dtype=np.int64)
    for token, rank in _ranks().items():
        lengths[rank] = len(token)
    return lengths


class TextCounts:
    """Exact token counts of any substring of one text, from a single encoding of it.

    ``count(a, b) == count_tokens(text[a:b])``: the part between the first cut position at or
    after ``a`` and the last one at or before ``b`` is read off the text's own tokens; only
    the few characters outside them are encoded again. The whole text's count costs what
    ``count_tokens`` costs; token offsets are worked out only when a part is asked for."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._ids: list[int] | None = None
        self._ends: npt.NDArray[np.int64] | None = None  # byte offset where each token ends
        self._bytes: npt.NDArray[np.int64] | None = None  # char offset -> byte offset

    def _encoded(self) -> list[int]:
        if self._ids is None:
            self._ids = get_encoding().encode_ordinary(self.text)
        return self._ids

    def _tokens_before(self, pos: int) -> int:
        """How many of the text's tokens end at or before character ``pos`` (a cut)."""
        if self._ends is None:
            ids = np.asarray(self._encoded(), dtype=np.int64)
            self._ends = np.cumsum(_token_bytes()[ids])
            if len(self._ends) and int(self._ends[-1]) != len(self.text):  # not ASCII
                code = np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)
                width = 1 + (code >= 0x80) + (code >= 0x800) + (code >= 0x10000)
                self._bytes = np.concatenate(([0], np.cumsum(width, dtype=np.int64)))
        at = pos if self._bytes is None else int(self._bytes[pos])
        return int(np.searchsorted(self._ends, at, side="right"))

    def count(self, start: int, end: int) -> int:
        if end <= start:
            return 0
        if start == 0 and end == len(self.text):
            return len(self._encoded())
        first = _first_cut(self.text, start, end)
        last = _last_cut(self.text, start, end)
        if first is None or last is None or first >= last:
            return count_tokens(self.text[start:end])
        return (
            count_tokens(self.text[start:first])
            + self._tokens_before(last)
            - self._tokens_before(first)
            + count_tokens(self.text[last:end])
        )


class Cl100kCounter:
    """cl100k counts of substrings and of joined pieces without counting them again: what the
    chunker's `SubstringCounter` asks for, equal to `count_tokens` on the same strings."""

    def spans(self, text: str) -> TextCounts | None:
        """Counts of ``text``'s substrings; None where the text has lone surrogates (the
        tokenizer replaces them, so byte offsets would not line up)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return TextCounts(text)

    def joined(self, parts: Sequence[tuple[str, int]], separator: str) -> int:
        """``count_tokens(separator.join(texts))`` from the parts' own counts: only the
        characters around each separator, out to the nearest cut position, are counted."""
        texts = [text for text, _ in parts]
        if len(parts) == 1:
            return parts[0][1]
        if not all(texts):
            return count_tokens(separator.join(texts))
        total, carried, last = 0, "", len(parts) - 1
        for i, (text, tokens) in enumerate(parts):
            # the part with the characters next to it in the joined text, which decide
            # whether its first and last positions are cuts
            before = (texts[i - 1] + separator)[-1] if i else ""
            after = (separator + texts[i + 1])[0] if i < last else ""
            framed, lead = before + text + after, len(before)
            head = _first_cut(framed, lead, lead + len(text)) if i else lead
            tail = _last_cut(framed, lead, lead + len(text)) if i < last else lead + len(text)
            if head is None or tail is None or head > tail:
                return count_tokens(separator.join(texts))
            head, tail = head - lead, tail - lead
            if i:
                total += count_tokens(carried + separator + text[:head])
            total += tokens - count_tokens(text[:head]) - count_tokens(text[tail:])
            carried = text[tail:]
        return total


CL100K = Cl100kCounter()
