"""The default embedder: WordLlama from the files its wheel ships, with no network at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docingest.clients.wordllama_embedder import MODEL_NAME, WordLlamaEmbedder, shipped_files

# Run in a fresh interpreter where every connect, send and name lookup fails and is counted,
# with an empty HOME (no cache to fall back on) and the Hugging Face libraries told to stay
# offline: loading and embedding must still work, with not one attempt.
_OFFLINE_PROBE = """
import json, socket, sys
attempts = []
def refuse(name):
    def blocked(*args, **kwargs):
        attempts.append(name)
        raise OSError("network disabled in this test")
    return blocked
for name in ("connect", "connect_ex", "sendto", "sendmsg"):
    setattr(socket.socket, name, refuse(name))
socket.getaddrinfo = refuse("getaddrinfo")
socket.create_connection = refuse("create_connection")
from docingest.clients.wordllama_embedder import WordLlamaEmbedder
e = WordLlamaEmbedder()
vectors = e.embed_sync(["what is my deductible", "annual deductible amount"])
print(json.dumps({"attempts": len(attempts), "version": e.version,
                  "norms": [float((v * v).sum()) for v in vectors]}))
"""


def test_loads_and_embeds_with_the_network_blocked(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["attempts"] == 0
    assert np.allclose(out["norms"], 1.0, atol=1e-5)
    assert not any((tmp_path / "cache").glob("**/*"))  # nothing cached or downloaded


def test_the_wheel_ships_both_files() -> None:
    weights, tokenizer = shipped_files()
    assert weights.stat().st_size > 10_000_000 and tokenizer.stat().st_size > 100_000


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


def test_identity_names_the_weights_and_dimensions(embedder: WordLlamaEmbedder) -> None:
    assert embedder.model == MODEL_NAME and embedder.dimensions == 256
    digest, dims = embedder.version.split("-")
    assert len(digest) == 12 and int(digest, 16) >= 0 and dims == "d256"
    assert WordLlamaEmbedder(64).version == f"{digest}-d64"  # another space, another version


def test_unsupported_dimensions_are_refused() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        WordLlamaEmbedder(300)


async def test_vectors_are_unit_length_deterministic_and_in_order(
    embedder: WordLlamaEmbedder,
) -> None:
    texts = [f"chunk {i}: the plan pays 80% of the allowed amount" for i in range(40)]
    first = (await embedder.embed(texts)).vectors  # large batch: worker thread
    again = (await embedder.embed(texts[:3])).vectors  # small batch: inline
    assert len(first) == 40 and all(v.dtype == np.float32 and v.shape == (256,) for v in first)
    assert np.allclose([float(v @ v) for v in first], 1.0, atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(first[:3], again, strict=True))
    assert not np.array_equal(first[0], first[1])


async def test_related_wording_is_closer_than_unrelated(embedder: WordLlamaEmbedder) -> None:
    """A semantic model, unlike feature hashing: words it never saw together still relate."""
    q, near, far = (
        await embedder.embed(
            ["eyeglasses", "spectacles and contact lenses", "the appeal deadline is 60 days"]
        )
    ).vectors
    assert float(q @ near) > float(q @ far) + 0.1
