from __future__ import annotations

import base64
import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from docingest.pipeline.hashing import (
    chunk_sha,
    parsed_sha256,
    sha256_hex,
    vector_sha,
    vector_to_le_bytes,
)

VEC = [1.0, -2.5, 0.1]


def _independent_vector_sha(values: list[float]) -> str:
    raw = struct.pack(f"<{len(values)}f", *values)
    return hashlib.sha256(base64.b64encode(raw)).hexdigest()


def test_vector_sha_known_vector() -> None:
    expected = _independent_vector_sha(VEC)
    assert vector_sha(VEC) == expected
    assert vector_sha(np.array(VEC, dtype=np.float32)) == expected
    assert vector_sha(np.array(VEC, dtype=np.float64)) == expected
    assert expected == "3d700769a248b03ff7562e5257954f92abe1fa7a30983ba89747578b6eb6fc76"


def test_vector_sha_is_over_base64_text_not_raw_bytes() -> None:
    raw = struct.pack("<3f", *VEC)
    assert vector_sha(VEC) != hashlib.sha256(raw).hexdigest()


def test_vector_bytes_are_little_endian_float32_whatever_the_input_dtype() -> None:
    expected = struct.pack("<3f", *VEC)
    assert vector_to_le_bytes(VEC) == expected
    assert vector_to_le_bytes(np.array(VEC, dtype=">f4")) == expected
    assert vector_to_le_bytes(np.array(VEC, dtype=">f8")) == expected
    assert vector_to_le_bytes(np.array(VEC, dtype=np.float32)) == expected


def test_vector_bytes_reject_matrices() -> None:
    with pytest.raises(ValueError):
        vector_to_le_bytes(np.zeros((2, 2), dtype=np.float32))


@given(st.lists(st.floats(width=32, allow_nan=False), max_size=64))
def test_vector_bytes_round_trip(values: list[float]) -> None:
    raw = vector_to_le_bytes(values)
    assert len(raw) == 4 * len(values)
    assert raw == struct.pack(f"<{len(values)}f", *values)
    np.testing.assert_array_equal(
        np.frombuffer(raw, dtype="<f4"), np.array(values, dtype=np.float32)
    )
    assert vector_sha(values) == _independent_vector_sha(values)


def test_chunk_sha_is_sha256_of_utf8() -> None:
    assert chunk_sha("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    text = "Deductible: $1,500 — après 🙂"
    assert chunk_sha(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert chunk_sha("a") != chunk_sha("a ")


def test_sha256_hex_and_parsed_sha256() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    md = "# Title\n\ntext\n"
    assert parsed_sha256(md) == hashlib.sha256(md.encode("utf-8")).hexdigest()
    assert parsed_sha256(md) != parsed_sha256(md + "\n")
