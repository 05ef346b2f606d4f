"""Vectors as stored (halfvec): rounding, range, and the dimensions the settings accept."""

from __future__ import annotations

import numpy as np
import pytest

from docingest.config import ConfigError, Settings
from docingest.pipeline import hashing
from docingest.pipeline.stored_vector import MAX_DIMENSIONS, NotStorable, as_stored


def test_stored_form_is_float16_widened_exactly_and_hashes_as_float32() -> None:
    v = np.random.default_rng(2).standard_normal(1536).astype(np.float32)
    stored = as_stored(v)
    assert stored.dtype == np.float32
    assert np.array_equal(stored, v.astype(np.float16).astype(np.float32))
    assert np.allclose(stored, v, rtol=1e-3, atol=1e-4)
    assert np.array_equal(as_stored(stored), stored)  # idempotent: one stored form
    assert hashing.vector_sha(stored) != hashing.vector_sha(v)


def test_values_beyond_float16_are_refused_not_stored_as_infinity() -> None:
    with pytest.raises(NotStorable):
        as_stored(np.array([0.5, 7e4], dtype=np.float32))
    with pytest.raises(NotStorable):
        as_stored(np.array([np.nan], dtype=np.float32))
    assert as_stored(np.array([65504.0], dtype=np.float32))[0] == 65504.0


# the provider embedders; the default (wordllama) has its own three sizes
PROVIDER = {"DOCINGEST_EMBEDDER": "openai", "DOCINGEST_OPENAI_API_KEY": "sk-test"}


@pytest.mark.parametrize("dims", ["3072", str(MAX_DIMENSIONS)])
def test_dimensions_up_to_the_halfvec_index_limit_are_accepted(dims: str) -> None:
    settings = Settings.from_env({**PROVIDER, "DOCINGEST_EMBED_DIMENSIONS": dims})
    assert settings.embed_dimensions == int(dims)


def test_dimensions_over_4000_stop_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="DOCINGEST_EMBED_DIMENSIONS must be <= 4000"):
        Settings.from_env({**PROVIDER, "DOCINGEST_EMBED_DIMENSIONS": "4001"})


def test_vector_search_setting_is_exact_by_default_and_checked() -> None:
    assert Settings.from_env({}).vector_search == "exact"
    assert Settings.from_env({"DOCINGEST_VECTOR_SEARCH": "index"}).vector_search == "index"
    with pytest.raises(ConfigError, match="DOCINGEST_VECTOR_SEARCH"):
        Settings.from_env({"DOCINGEST_VECTOR_SEARCH": "hnsw"})
