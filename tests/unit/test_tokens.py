from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docingest.pipeline import tokens as tokens_module
from docingest.pipeline.tokens import (
    BPE_FILE,
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
