"""The offline ``hash`` embedder: deterministic feature hashing (DESIGN.md section 1).

This embedder is LEXICAL, NOT SEMANTIC. Two texts are close only when they share words or
word pairs; synonyms, paraphrases and other languages are not recognized. It exists so the
whole pipeline runs offline with zero setup and reproducible vectors; use a real embedding
model (the ``openai`` embedder) for semantic search.

Version ``1`` of the math, for a text and a dimension count ``dims``:

1. ``unicodedata.normalize("NFKC", text).lower()``;
2. features: the ``\\w+`` words (Python's Unicode ``re``), plus every pair of consecutive words
   (joined by one space, so a pair never equals a word);
3. weight of a feature occurring ``tf`` times: ``1 + ln(tf)`` (sublinear term frequency);
4. signed feature hashing: ``h = int.from_bytes(blake2b(utf8(feature), digest_size=8,
   person=b"docingest-hash-1").digest(), "little")``; the feature adds ``+weight`` if bit 63 of
   ``h`` is set, else ``-weight``, to dimension ``h % dims``;
5. L2-normalize and return float32. When the text has no word at all, or every feature
   cancelled out, the result is the unit vector ``e_0`` (1 at index 0), so every vector is
   finite with norm 1.

Changing any of this changes every vector: bump :data:`HASH_EMBEDDER_VERSION`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

HASH_EMBEDDER_VERSION = "1"

_WORD = re.compile(r"\w+")
_PERSON = b"docingest-hash-1"  # blake2b personalization, exactly 16 bytes


@functools.lru_cache(maxsize=1 << 18)
def _feature_hash(feature: str) -> int:
    digest = hashlib.blake2b(
        feature.encode("utf-8", "surrogatepass"), digest_size=8, person=_PERSON
    ).digest()
    return int.from_bytes(digest, "little")


def _features(text: str) -> Counter[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    counts = Counter(words)
    counts.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    return counts


def _unit_e0(dims: int) -> npt.NDArray[np.float32]:
    vec = np.zeros(dims, dtype=np.float32)
    vec[0] = 1.0
    return vec


def hash_embed(text: str, dims: int) -> npt.NDArray[np.float32]:
    """The ``dims``-dimensional unit float32 vector of ``text`` (see the module docstring)."""
    if dims < 1:
        raise ValueError("dims must be >= 1")
    counts = _features(text)
    if not counts:
        return _unit_e0(dims)
    n = len(counts)
    hashes = np.fromiter((_feature_hash(f) for f in counts), dtype=np.uint64, count=n)
    weights = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=n))
    signs = np.where((hashes >> np.uint64(63)) == 1, 1.0, -1.0)
    index = (hashes % np.uint64(dims)).astype(np.intp)
    vec = np.bincount(index, weights=signs * weights, minlength=dims)
    norm = float(np.linalg.norm(vec))
    if not norm > 0.0:
        return _unit_e0(dims)
    result: npt.NDArray[np.float32] = (vec / norm).astype(np.float32)
    return result


def hash_embed_many(texts: Sequence[str], dims: int) -> npt.NDArray[np.float32]:
    """``hash_embed`` of each text, stacked into an ``(len(texts), dims)`` float32 array."""
    if dims < 1:
        raise ValueError("dims must be >= 1")
    out = np.empty((len(texts), dims), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = hash_embed(text, dims)
    return out
