"""Integrity hashes used at every hand-off (DESIGN.md section 3 and section 8).

- ``chunk_sha    = sha256(utf8(text))``
- ``vector_sha   = sha256(base64(float32 little-endian bytes))`` (the digest is taken over the
  ASCII base64 text, not over the raw bytes)
- ``parsed_sha256 = sha256(utf8(normalized markdown))``

All digests are lowercase hex strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pybase64  # same output as the standard library's base64, about 15x faster at 6 KB

VectorLike = Sequence[float] | npt.NDArray[np.floating]


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def chunk_sha(text: str) -> str:
    """sha256 of the chunk text encoded as UTF-8 (strict: lone surrogates are an error)."""
    return sha256_hex(text.encode("utf-8"))


def vector_to_le_bytes(vec: VectorLike) -> bytes:
    """The vector as consecutive float32 little-endian values (4 bytes per dimension).

    Values are rounded to float32 exactly as numpy's ``astype(float32)`` does. The vector must be
    one-dimensional.
    """
    arr = np.asarray(vec, dtype=np.float64) if not isinstance(vec, np.ndarray) else vec
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got {arr.ndim} dimensions")
    return arr.astype("<f4", copy=False).tobytes()


def vector_sha(vec: VectorLike) -> str:
    """sha256 (hex) of the ASCII base64 encoding of :func:`vector_to_le_bytes`."""
    return le_bytes_sha(vector_to_le_bytes(vec))


def le_bytes_sha(data: bytes) -> str:
    """:func:`vector_sha` of a vector given as its float32 little-endian bytes."""
    return sha256_hex(pybase64.b64encode(data))


def parsed_sha256(normalized_markdown: str) -> str:
    """sha256 of the parsed artifact. Pass the output of ``normalize_markdown``; this function
    does not normalize again (so it can also verify an artifact exactly as stored)."""
    return sha256_hex(normalized_markdown.encode("utf-8"))
