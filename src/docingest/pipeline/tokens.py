"""Token counting with OpenAI's ``cl100k_base`` vocabulary, fully offline.

The BPE ranks file ships inside this package (``pipeline/data/cl100k_base.tiktoken``, the
file OpenAI publishes for tiktoken, MIT) and is checked against OpenAI's published sha256
before use, so nothing is ever downloaded and no third-party repackaging is trusted. The
encoding is built lazily on first use and cached for the life of the process.

Special-token strings such as ``<|endoftext|>`` in document text are counted as ordinary text
(``encode_ordinary``): a document can never smuggle control tokens into an embedding request,
and counting never raises on them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

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
def get_encoding() -> tiktoken.Encoding:
    """The cached offline encoding (built on first call, about 0.3 s)."""
    data = resources.files("docingest.pipeline").joinpath("data", BPE_FILE).read_bytes()
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=_PAT_STR,
        mergeable_ranks=load_ranks(data),
        special_tokens=_SPECIAL_TOKENS,
    )


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text`` (special-token strings count as plain text)."""
    if not text:
        return 0
    return len(get_encoding().encode_ordinary(text))
