"""pgvector's binary wire format, handled as bytes.

A `vector` travels in binary COPY/results as: int16 dimensions, int16 unused, then one
big-endian float32 per dimension. Bulk moves (the 001 migration) pass these bytes through
untouched and only byteswap them to compute `vector_sha` over float32 little-endian values,
instead of building a Python object per vector and encoding it again.
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


def vector_sha(data: bytes) -> str:
    """`hashing.vector_sha` of the vector these bytes encode, without decoding it."""
    return le_bytes_sha(np.frombuffer(data, dtype=">f4", offset=_HEADER).astype("<f4").tobytes())
