"""Vectors in the form docingest stores and searches them: pgvector `halfvec` (float16).

A provider's float32 vector is rounded to float16 once, before it is hashed or written, so the
`vector_sha` recorded with a row (DESIGN.md section 3: sha256 of the base64 of the float32
little-endian bytes) is the hash of exactly what the row holds, and can be re-checked from it.
Widening float16 to float32 is exact, so the stored value has one float32 form.

Cosine ranking loses nothing that matters: float16 keeps 11 significant bits, unit-norm
embedding components are far from its range limits, and exact search compares stored
vectors with each other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: pgvector indexes `halfvec` up to this many dimensions (HNSW and IVFFlat)
MAX_DIMENSIONS = 4000


class NotStorable(ValueError):
    """A value does not fit float16 (|x| > 65504) or is not finite."""


def as_stored(vec: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The vector rounded to float16 and widened back to float32: the value the database
    will hold. Raises `NotStorable` when a component overflows float16."""
    arr = np.asarray(vec, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got {arr.ndim} dimensions")
    with np.errstate(over="ignore"):
        half = arr.astype(np.float16)
    if not np.isfinite(half).all():
        raise NotStorable("a component is not finite as float16")
    return half.astype(np.float32)
