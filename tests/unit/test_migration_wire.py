"""Pure helpers of the 001 migration's fast path: vectors as pgvector wire bytes, chunk ids as
bytes, and the `--embed-version-map` parser."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from docingest.domain.legacy_001 import version_map
from docingest.pipeline import hashing, ids, vector_wire
from docingest.pipeline.stored_vector import as_stored


def _wire(values: np.ndarray) -> bytes:
    return len(values).to_bytes(2, "big") + b"\0\0" + values.astype(">f4").tobytes()


def test_wire_bytes_decode_and_become_the_stored_halfvec() -> None:
    values = np.random.default_rng(7).standard_normal(1536).astype(np.float32)
    data = _wire(values)
    assert vector_wire.dimensions(data) == 1536
    assert np.array_equal(vector_wire.to_numpy(data), values)
    converted = vector_wire.to_halfvec(data)
    assert converted is not None
    wire, sha = converted
    stored = as_stored(values)
    assert not np.array_equal(stored, values)  # rounding happened: the test can tell
    assert sha == hashing.vector_sha(stored)
    assert wire[:4] == data[:4] and len(wire) == 4 + 2 * 1536
    assert np.array_equal(np.frombuffer(wire, dtype=">f2", offset=4).astype(np.float32), stored)


def test_a_value_beyond_float16_is_not_converted() -> None:
    values = np.ones(4, dtype=np.float32)
    values[2] = 1e6
    assert vector_wire.to_halfvec(_wire(values)) is None


def test_wire_dimensions_reject_bytes_that_disagree_with_the_header() -> None:
    data = _wire(np.ones(8, dtype=np.float32))
    assert vector_wire.dimensions(data) == 8
    assert vector_wire.dimensions(data[:-4]) == -1
    assert vector_wire.dimensions(b"\0") == -1


def test_chunk_id_bytes_is_uuid5_of_the_canonical_key() -> None:
    doc = uuid.UUID("0b9c5a52-9e8e-4c56-9a43-0d5d2f1e6a11")
    for name, version, ord_ in (("markdown-simple", "1", 0), ("Markdown-Simple", "2", 41)):
        expected = uuid.uuid5(ids.NAMESPACE, f"{doc}:{name}:{version}:{ord_}".lower())
        assert ids.chunk_id_bytes(doc, name, version, ord_) == expected.bytes
        assert ids.chunk_id(doc, name, version, ord_) == expected


def test_version_map_parses_pairs_and_rejects_bad_ones() -> None:
    assert version_map(["1=d1536", " 2 = d3072 ", "1=d1536"]) == {"1": "d1536", "2": "d3072"}
    for bad in (["1"], ["=d1536"], ["1="], ["1=a", "1=b"]):
        with pytest.raises(ValueError):
            version_map(bad)
