"""The fake's vectors: deterministic per (model, text), cheap for a whole request at once.

Each text gets two 32-bit keys from sha256(model, text); component j of its vector is the
top 16 bits of an integer hash of (keys, j), centred on 0, and the row is normalised to
unit length through an exact integer sum of squares. Every step is a numpy operation over the whole (texts x dimensions) matrix
in 32-bit integers, so a 256-input request of 1536 dimensions costs about 3 ms of CPU
instead of one random generator per text (about 20 ms, and the issue-12 profile saw up
to 140 ms under load). A component does not depend on `dimensions`, so a shorter vector is
the renormalised prefix of a longer one (Matryoshka truncation, as the real models do),
and the same text gets the same vector in any batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_U32 = npt.NDArray[np.uint32]


def _mix(x: _U32) -> _U32:
    """A 32-bit integer hash with good avalanche (Chris Wellons' "lowbias32"), in place."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _keys(model: str, texts: Sequence[str]) -> tuple[_U32, _U32]:
    digests = b"".join(
        hashlib.sha256(f"{model}\x00{t}".encode("utf-8", "surrogatepass")).digest()[:8]
        for t in texts
    )
    pairs = np.frombuffer(digests, dtype="<u4").reshape(len(texts), 2).astype(np.uint32)
    return pairs[:, 0], pairs[:, 1]


def deterministic_vectors(
    model: str, texts: Sequence[str], dimensions: int
) -> npt.NDArray[np.float32]:
    """One unit-norm float32 row per text, shape (len(texts), dimensions)."""
    first, second = _keys(model, texts)
    columns = _mix(np.arange(dimensions, dtype=np.uint32) * np.uint32(0x9E3779B9))
    z = _mix(first[:, None] ^ columns[None, :])
    z = _mix(z + second[:, None])
    # 16-bit components and an integer sum of squares: exact, so a row's norm (and so its
    # float32 values) cannot depend on the batch around it the way a float reduction can.
    components = (z >> np.uint32(16)).astype(np.int64) - 32768
    norms = np.sqrt(np.square(components).sum(axis=1, keepdims=True).astype(np.float64))
    rows: npt.NDArray[np.float32] = (components / np.maximum(norms, 1.0)).astype(np.float32)
    return rows


def deterministic_vector(model: str, text: str, dimensions: int) -> npt.NDArray[np.float32]:
    """The vector the fake returns for (model, text, dimensions): unit-norm float32."""
    row: npt.NDArray[np.float32] = deterministic_vectors(model, [text], dimensions)[0]
    return row
