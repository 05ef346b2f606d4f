"""The offline semantic default: WordLlama `l2_supercat` token embeddings, from the wheel itself.

WordLlama is a static embedding model: every token of the Llama 2 vocabulary has a learned
256-dimension vector (trained to reproduce a large model's sentence similarity), and a text's
vector is the normalized average of its tokens' vectors. No network, no GPU, no torch: a
16 MB weights file and a tokenizer file, both inside the `wordllama` wheel.

`WordLlama.load()` is not used: it looks for the tokenizer under `tokenizer/` while the wheel
ships it under `tokenizers/`, and then downloads it from the Hugging Face hub. Here the two
shipped files are opened by path and nothing else is read, so nothing can be fetched at run
time (`tests/unit/test_wordllama_embedder.py` runs it with sockets blocked).

`version` carries the weights file's sha256 prefix and the dimensions: a wheel that ships
other weights gives another (model, version) pair, so vectors of two releases never mix.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np

from docingest.clients.embedders import Embedded, Vector
from docingest.config import WORDLLAMA_DIMENSIONS

MODEL_NAME: Final = "wordllama-l2-supercat"
SUPPORTED_DIMENSIONS: Final = WORDLLAMA_DIMENSIONS
DEFAULT_DIMENSIONS: Final = 256
_WEIGHTS: Final = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER: Final = ("tokenizers", "l2_supercat_tokenizer_config.json")
_TENSOR: Final = "embedding.weight"
_MAX_INPUT_TOKENS: Final = 8191  # no model limit (averaged tokens); the chunker's bound applies
_MAX_BATCH_INPUTS: Final = 256
_MAX_BATCH_TOKENS: Final = 250_000
# Rows padded to the batch's longest text are materialised as (rows, tokens, dims) float32:
# 32 rows of ~600 tokens keep that near 20 MB whatever the batch size.
_ROWS_PER_PASS: Final = 32
_INLINE_MAX_INPUTS: Final = 4


def shipped_files() -> tuple[Path, Path]:
    """(weights, tokenizer) inside the installed `wordllama` package (importing it: call
    `_inference_class` first)."""
    root = resources.files("wordllama")
    weights = Path(str(root.joinpath(*_WEIGHTS)))
    tokenizer = Path(str(root.joinpath(*_TOKENIZER)))
    for path in (weights, tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"the wordllama wheel does not ship {path.name}")
    return weights, tokenizer


def _inference_class() -> Any:
    """`wordllama.inference.WordLlamaInference`, imported without its side effect: the package
    calls `logging.basicConfig` on import, which would add a root handler that bypasses our
    log format (docingest.logs). The root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from wordllama.inference import WordLlamaInference
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return WordLlamaInference


class WordLlamaEmbedder:
    """`Embedder` over WordLlama's shipped weights (see the module docstring)."""

    def __init__(self, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        if dimensions not in SUPPORTED_DIMENSIONS:
            raise ValueError(f"dimensions must be one of {SUPPORTED_DIMENSIONS}")
        # One core per process: workers scale out as processes, and the tokenizer's thread
        # pool would otherwise warn in every child the worker forks (the PDF parser).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from safetensors import safe_open
        from tokenizers import Tokenizer

        inference_class = _inference_class()  # first: it imports the package (see there)
        weights_path, tokenizer_path = shipped_files()
        weights_sha = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        with safe_open(str(weights_path), framework="np") as weights:
            matrix = weights.get_tensor(_TENSOR)[:, :dimensions]
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._inference = inference_class(matrix, tokenizer)
        self.model = MODEL_NAME
        self.version = f"{weights_sha[:12]}-d{dimensions}"
        self.dimensions = dimensions
        self.max_input_tokens = _MAX_INPUT_TOKENS
        self.max_batch_inputs = _MAX_BATCH_INPUTS
        self.max_batch_tokens = _MAX_BATCH_TOKENS

    def embed_sync(self, texts: Sequence[str]) -> list[Vector]:
        """Unit-length float32 vectors, in input order (a text with no known token: zeros)."""
        if not texts:
            return []
        raw = self._inference.embed(list(texts), norm=False, batch_size=_ROWS_PER_PASS)
        matrix = np.asarray(raw, dtype=np.float32)
        if matrix.shape != (len(texts), self.dimensions):
            raise RuntimeError(f"wordllama returned shape {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
        return [np.ascontiguousarray(row) for row in matrix]

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if len(texts) <= _INLINE_MAX_INPUTS:  # a search query: faster than a thread hop
            return Embedded(self.embed_sync(texts))
        return Embedded(await asyncio.to_thread(self.embed_sync, list(texts)))

    async def aclose(self) -> None:
        return None
