"""A fake OpenAI `/v1/embeddings` server for tests, benchmarks and offline trials.

Run it as a process::

    python -m docingest.testing.fake_openai --host 127.0.0.1 --port 8089 [--api-key KEY]

or in-process with `create_app(FakeOpenAIConfig(...))` (e.g. behind `httpx.ASGITransport`).

What it reproduces of the real contract (CONTRACTS.md section 2):

* `POST /v1/embeddings` with `input` as one string or a list of strings, `model`,
  `dimensions` (text-embedding-3* only; default 1536, 3072 for -large), `encoding_format`
  `"float"` or `"base64"` (little-endian float32) and `user`. Token-array inputs
  (`[int]`, `[[int]]`) are rejected with 400: the fake only embeds text.
* Limits: no empty strings, at most 2048 inputs, 8192 tokens per input and 300,000
  tokens per request (real cl100k counts from `docingest.pipeline.tokens`). Violations
  answer 400 with the OpenAI error body.
* Vectors are deterministic per (model, text): unit-norm float32 from a counter-based hash
  seeded with sha256(model, text), computed for a whole request at once (`vectors.py`). A
  shorter `dimensions` is the renormalised prefix of the full vector, like the real
  models' Matryoshka truncation.
* `x-ratelimit-*` headers on every `/v1` response, from an in-memory token bucket per
  minute (`--rpm`, `--tpm`); a request over budget gets a real-looking 429.

Test-only routes: `GET|POST /control`, `POST /control/reset`, `GET /stats`,
`POST /stats/reset`, `GET /healthz`. See `FaultConfig` for the fault keys.

Request bodies carry documents' text: nothing here logs them, only counts.

Modules, one job each: `config` (start-up config and fault keys), `limits` (token buckets,
sliding window), `state` (what the fake remembers), `vectors`, `wire` (request validation,
response and error bodies), `app` (the routes) and `cli` (the process).
"""

from docingest.testing.fake_openai.app import create_app, fake_state
from docingest.testing.fake_openai.cli import config_from_args, main
from docingest.testing.fake_openai.config import CONTROL_KEYS, FakeOpenAIConfig, FaultConfig
from docingest.testing.fake_openai.limits import go_duration
from docingest.testing.fake_openai.state import FakeOpenAIState
from docingest.testing.fake_openai.vectors import deterministic_vector, deterministic_vectors

__all__ = [
    "CONTROL_KEYS",
    "FakeOpenAIConfig",
    "FakeOpenAIState",
    "FaultConfig",
    "config_from_args",
    "create_app",
    "deterministic_vector",
    "deterministic_vectors",
    "fake_state",
    "go_duration",
    "main",
]
