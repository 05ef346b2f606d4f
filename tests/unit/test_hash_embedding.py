from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docingest.pipeline.hash_embedding import HASH_EMBEDDER_VERSION, hash_embed, hash_embed_many


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


def test_version() -> None:
    assert HASH_EMBEDDER_VERSION == "1"


def test_single_word_matches_the_documented_math() -> None:
    # Computed independently: one feature, weight 1 + ln(1) = 1, sign from bit 63.
    digest = hashlib.blake2b(b"hello", digest_size=8, person=b"docingest-hash-1").digest()
    h = int.from_bytes(digest, "little")
    expected = np.zeros(64, dtype=np.float32)
    expected[h % 64] = 1.0 if h >> 63 else -1.0
    np.testing.assert_array_equal(hash_embed("Hello!", 64), expected)


def _reference(text: str, dims: int) -> list[float]:
    """The documented math, written out independently in plain Python."""
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())
    features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    vec = [0.0] * dims
    for feature in set(features):
        tf = features.count(feature)
        digest = hashlib.blake2b(feature.encode(), digest_size=8, person=b"docingest-hash-1")
        h = int.from_bytes(digest.digest(), "little")
        vec[h % dims] += (1.0 + math.log(tf)) * (1.0 if h >> 63 else -1.0)
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        return [1.0] + [0.0] * (dims - 1)
    return [x / norm for x in vec]


@pytest.mark.parametrize(
    "text",
    [
        "deductible deductible deductible copay",
        "The plan pays 80% after the deductible; the plan pays 100% for preventive care.",
        "Ａｐｐｅａｌ Ａｐｐｅａｌ",
    ],
)
def test_matches_an_independent_reference(text: str) -> None:
    for dims in (16, 1536):
        np.testing.assert_allclose(hash_embed(text, dims), _reference(text, dims), atol=1e-6)


@settings(max_examples=100)
@given(st.lists(st.sampled_from(["claim", "copay", "plan", "Plan", "x1", "é"]), max_size=30))
def test_reference_property(words: list[str]) -> None:
    text = " ".join(words)
    np.testing.assert_allclose(hash_embed(text, 32), _reference(text, 32), atol=1e-6)


def test_unit_norm_dtype_and_dims() -> None:
    for dims in (1, 7, 256, 1536):
        vec = hash_embed("The annual deductible is $1,500 per person.", dims)
        assert vec.shape == (dims,)
        assert vec.dtype == np.float32
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


def test_deterministic() -> None:
    text = "Out-of-pocket maximum for in-network providers"
    np.testing.assert_array_equal(hash_embed(text, 384), hash_embed(text, 384))


def test_case_and_compatibility_forms_do_not_matter() -> None:
    np.testing.assert_array_equal(
        hash_embed("DEDUCTIBLE ﬁling", 128), hash_embed("deductible filing", 128)
    )
    np.testing.assert_array_equal(hash_embed("ＣＯＰＡＹ", 128), hash_embed("copay", 128))


def test_empty_or_wordless_text_gives_e0() -> None:
    e0 = np.zeros(32, dtype=np.float32)
    e0[0] = 1.0
    for text in ("", "   ", "!!! ... ---", "\u200b"):
        np.testing.assert_array_equal(hash_embed(text, 32), e0)


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    query = hash_embed("annual deductible for in-network care", 1536)
    similar = hash_embed("The in-network annual deductible is $500 for care.", 1536)
    unrelated = hash_embed("Pharmacy mail-order prescriptions ship within ten days.", 1536)
    assert _cos(query, similar) > 0.3
    assert _cos(query, similar) > _cos(query, unrelated) + 0.2


def test_word_order_matters_through_bigrams() -> None:
    a = hash_embed("claim denied appeal", 1536)
    b = hash_embed("appeal denied claim", 1536)
    assert 0.0 < _cos(a, b) < 0.999


def test_many_matches_single() -> None:
    texts = ["alpha beta", "", "gamma delta gamma"]
    many = hash_embed_many(texts, 50)
    assert many.shape == (3, 50)
    assert many.dtype == np.float32
    for row, text in zip(many, texts, strict=True):
        np.testing.assert_array_equal(row, hash_embed(text, 50))
    assert hash_embed_many([], 50).shape == (0, 50)


def test_rejects_bad_dims() -> None:
    with pytest.raises(ValueError):
        hash_embed("x", 0)
    with pytest.raises(ValueError):
        hash_embed_many(["x"], 0)


@settings(max_examples=200)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=300))
def test_always_finite_unit_vectors(text: str, dims: int) -> None:
    vec = hash_embed(text, dims)
    assert vec.shape == (dims,)
    assert np.all(np.isfinite(vec))
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
