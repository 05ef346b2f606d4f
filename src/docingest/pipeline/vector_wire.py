"""pgvector's binary wire format, handled as bytes.

A `vector` travels in binary COPY/results as: int16 dimensions, int16 unused, then one
big-endian float32 per dimension; a `halfvec` the same with big-endian float16. Bulk moves
(the 001 migration) turn one into the other with numpy over the whole buffer, instead of
building a Python object per vector and encoding it again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from docingest.pipeline.hashing import le_bytes_sha

_HEADER = 4


def dimensions(data: bytes) -> int:
    """The dimension count from the header, or -1 when the bytes do not match it."""
    if len(data) < _HEADER:
        return -1
    dims = int.from_bytes(data[:2], "big")
    return dims if len(data) == _HEADER + 4 * dims else -1


def to_numpy(data: bytes) -> npt.NDArray[np.float32]:
    """The values as native float32."""
    return np.frombuffer(data, dtype=">f4", offset=_HEADER).astype(np.float32)


def to_halfvec(data: bytes) -> tuple[bytes, str] | None:
    """The `halfvec` wire bytes of the `vector` these bytes encode, rounded as docingest
    stores vectors (`stored_vector.as_stored`), and the stored vector's `vector_sha`. None
    when a value does not fit float16."""
    with np.errstate(over="ignore"):
        half = np.frombuffer(data, dtype=">f4", offset=_HEADER).astype(np.float16)
    if not np.isfinite(half).all():
        return None
    wire = data[:_HEADER] + half.astype(">f2").tobytes()
    return wire, le_bytes_sha(half.astype("<f4").tobytes())
