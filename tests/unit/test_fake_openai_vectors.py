"""The fake OpenAI server's vectors (testing/fake_openai/vectors.py): computed for a whole
request at once, yet a function of (model, text) alone, as tests and `docingest validate`
assume (identical text -> identical vector, in any batch, at any position)."""

from __future__ import annotations

import numpy as np

from docingest.testing.fake_openai import deterministic_vector, deterministic_vectors

MODEL = "text-embedding-3-small"


def test_a_text_gets_the_same_vector_in_any_batch_and_position() -> None:
    texts = [f"clause {i}: the deductible applies" for i in range(40)]
    batch = deterministic_vectors(MODEL, texts, 1536)
    shuffled = deterministic_vectors(MODEL, [texts[7], "other", texts[3], texts[7]], 1536)
    assert batch.shape == (40, 1536) and batch.dtype == np.float32
    np.testing.assert_array_equal(shuffled[0], batch[7])
    np.testing.assert_array_equal(shuffled[3], batch[7])
    np.testing.assert_array_equal(shuffled[2], batch[3])
    np.testing.assert_array_equal(deterministic_vector(MODEL, texts[5], 1536), batch[5])


def test_vectors_are_unit_norm_and_distinct_texts_are_near_orthogonal() -> None:
    texts = [f"benefit {i}" for i in range(300)]
    rows = deterministic_vectors(MODEL, texts, 1536).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    cosines = rows @ rows.T
    np.fill_diagonal(cosines, 0.0)
    assert np.abs(cosines).max() < 0.2  # random directions in 1536 dims: |cos| ~ 0.03
    assert abs(float(rows.mean())) < 1e-3  # centred: components are symmetric around 0


def test_model_and_text_both_change_the_vector() -> None:
    a = deterministic_vector(MODEL, "copay", 64)
    assert not np.array_equal(a, deterministic_vector("text-embedding-3-large", "copay", 64))
    assert not np.array_equal(a, deterministic_vector(MODEL, "copay ", 64))


def test_a_shorter_vector_is_the_renormalised_prefix() -> None:
    full = deterministic_vector(MODEL, "out-of-pocket maximum", 3072)
    for dims in (1, 256, 1536):
        prefix = full[:dims] / np.linalg.norm(full[:dims])
        np.testing.assert_allclose(
            deterministic_vector(MODEL, "out-of-pocket maximum", dims), prefix, atol=1e-6
        )


def test_lone_surrogates_and_empty_batches() -> None:
    assert deterministic_vectors(MODEL, [], 8).shape == (0, 8)
    odd = deterministic_vector(MODEL, "broken \ud800 text", 8)
    assert np.isfinite(odd).all()


def test_every_row_of_a_batch_equals_the_text_embedded_alone() -> None:
    """Bit for bit, at any width: `docingest validate` recomputes each stored vector alone
    and compares hashes, while the server computed it inside a batch."""
    texts = [f"chunk {i} of the policy booklet" for i in range(257)]
    for dims in (3, 1536):
        batch = deterministic_vectors(MODEL, texts, dims)
        for i in range(0, len(texts), 17):
            np.testing.assert_array_equal(deterministic_vector(MODEL, texts[i], dims), batch[i])
