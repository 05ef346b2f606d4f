from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.pipeline import tokens as tokens_module
from docingest.pipeline.tokens import (
    BPE_FILE,
    CL100K,
    ENCODING_NAME,
    count_tokens,
    get_encoding,
    load_ranks,
)


def test_counts_match_cl100k() -> None:
    assert ENCODING_NAME == "cl100k_base"
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert get_encoding().encode_ordinary("hello world") == [15339, 1917]  # cl100k ids
    assert count_tokens("a" * 1000) < 1000


def test_special_token_text_is_counted_as_plain_text() -> None:
    n = count_tokens("<|endoftext|>")
    assert n > 1  # not the single special token 100257, and no exception


def test_encoding_is_built_once() -> None:
    assert get_encoding() is get_encoding()


def test_loads_without_network_or_cache(tmp_path: object) -> None:
    """A fresh interpreter with sockets disabled and an empty tiktoken cache still counts."""
    code = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        from docingest.pipeline.tokens import count_tokens
        print(count_tokens("hello world"))
        """
    )
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_the_shipped_ranks_file_is_checked_against_its_published_hash() -> None:
    data = (Path(tokens_module.__file__).parent / "data" / BPE_FILE).read_bytes()
    assert len(load_ranks(data)) == 100256  # cl100k's ordinary tokens
    tampered = data.replace(b" 0\n", b" 1\n", 1)
    with pytest.raises(ValueError, match="published sha256"):
        load_ranks(tampered)


# Characters on both sides of every class the split pattern tells apart: ASCII letters,
# digits, punctuation, whitespace and line breaks, apostrophes of contractions, letters and
# digits outside ASCII (accented, CJK, Arabic-Indic), marks, emoji, and surrogate-free
# supplementary characters.
_PIECES = st.sampled_from(
    [
        "a", "Z", "q", "0", "7", "123456", " ", "  ", "\t", "\n", "\n\n", "\r\n", ".", ",",
        "'", "'s", "'LL", "’", "-", "#", "$", "(", "é", "ß", "日本", "٣", "\u0301", "🙂",
        "word", " word", "Word.", "copay", "<|endoftext|>",
    ]
)  # fmt: skip
_TEXTS = st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TEXTS, st.data())
def test_substring_counts_equal_counting_the_substring(text: str, data: st.DataObject) -> None:
    spans = CL100K.spans(text)
    if spans is None:  # lone surrogates: the chunker counts such a text directly
        assert any("\ud800" <= ch <= "\udfff" for ch in text)
        return
    assert spans.count(0, len(text)) == count_tokens(text)
    for _ in range(8):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, len(text)))
        assert spans.count(start, end) == count_tokens(text[start:end]), (start, end)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXTS.filter(bool), min_size=1, max_size=5), st.sampled_from(["\n\n", " ", ""]))
def test_joined_counts_equal_counting_the_joined_text(parts: list[str], separator: str) -> None:
    counted = [(part, count_tokens(part)) for part in parts]
    assert CL100K.joined(counted, separator) == count_tokens(separator.join(parts))


def test_substring_counts_read_the_text_once() -> None:
    """A prefix of a long paragraph costs a few characters of counting, not the prefix."""
    text = "The plan pays 80% of covered charges after the deductible. " * 200
    spans = CL100K.spans(text)
    assert spans is not None
    seen = 0

    def counting(piece: str) -> int:
        nonlocal seen
        seen += len(piece)
        return count_tokens(piece)

    original = tokens_module.count_tokens
    tokens_module.count_tokens = counting
    try:
        for end in range(1000, len(text), 997):
            assert spans.count(3, end) == count_tokens(text[3:end])
    finally:
        tokens_module.count_tokens = original
    assert 0 < seen < 20 * 12  # a word or so at each end of each of the 12 prefixes
