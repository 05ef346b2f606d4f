"""Embedding clients: the `Embedder` interface, the offline `HashEmbedder` and `OpenAIEmbedder`.

`OpenAIEmbedder` speaks the OpenAI `/v1/embeddings` contract (CONTRACTS.md section 2) to
OpenAI or any compatible server (Azure, vLLM, TEI, Ollama, `docingest.testing.fake_openai`).
Provider failures leave this module as domain errors only:

* `PermanentError(EMBEDDING_AUTH)` for 401/403,
* `InputRejected(EMBEDDING_REJECTED)` for 400/413/422 (the input was refused: maybe one
  poison input), `PermanentError(EMBEDDING_REJECTED)` for other 4xx and for malformed
  answers (wrong count, wrong dimensions, bad encoding),
* `TransientError(EMBEDDING_UNAVAILABLE)` when retries inside `embed` are exhausted
  (408, 409, 5xx, connection errors and timeouts), `RateLimited` when the last failure
  was a 429 rate limit, and `QuotaExhausted(EMBEDDING_QUOTA)` at once when the provider's
  quota is exhausted.

Inputs are documents' text: no message or log line built here contains them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from docingest.clients.http_retry import Backoff, Retryable, retry_after_seconds, with_retries
from docingest.domain.errors import (
    ErrorCode,
    InputRejected,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from docingest.pipeline.hash_embedding import HASH_EMBEDDER_VERSION, hash_embed_many
from docingest.security.outbound import require_tls_or_loopback

logger = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_INPUT_TOKENS = 8191  # the contract says 8192; one token of margin for tokenizer drift
MAX_BATCH_INPUTS = 256  # DESIGN.md section 2: micro-batches of at most 256 inputs
MAX_BATCH_TOKENS = 250_000  # under the provider's 300,000 tokens per request
MAX_INLINE_RETRY_WAIT_S = 60.0  # longer server hints are handed to the job scheduler instead
QUOTA_RETRY_AFTER_S = 300.0
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0


@dataclass(frozen=True)
class RateLimitSnapshot:
    """The provider's `x-ratelimit-*` headers from one response (None where absent)."""

    limit_requests: int | None
    limit_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_requests_s: float | None
    reset_tokens_s: float | None


@dataclass(frozen=True)
class Embedded:
    """What one `embed` call returns: its vectors, in input order, and what the provider
    said about that very request. A result, not client state, so concurrent calls on one
    shared embedder never see each other's usage or rate-limit headers."""

    vectors: list[Vector]
    usage_tokens: int | None = None  # billed tokens, when the provider reports them
    rate_limit: RateLimitSnapshot | None = None  # the answered response's x-ratelimit-*


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32 vectors, in input order, one request per call.

    Callers batch: at most `max_batch_inputs` texts and `max_batch_tokens` tokens per call,
    each text within `max_input_tokens` and non-empty. `(model, version)` identify the
    vector space: vectors from different pairs are not comparable.
    """

    model: str
    version: str
    dimensions: int
    max_input_tokens: int
    max_batch_inputs: int
    max_batch_tokens: int

    async def embed(self, texts: Sequence[str]) -> Embedded: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- hash


class HashEmbedder:
    """The offline default: deterministic lexical feature hashing (not semantic)."""

    # Batches larger than this are hashed in a worker thread to keep the event loop free.
    INLINE_MAX_INPUTS = 16
    INLINE_MAX_CHARS = 64_000

    def __init__(self, dimensions: int) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        self.model = "hash-lexical"
        self.version = f"{HASH_EMBEDDER_VERSION}-d{dimensions}"
        self.dimensions = dimensions
        self.max_input_tokens = MAX_INPUT_TOKENS
        self.max_batch_inputs = MAX_BATCH_INPUTS
        self.max_batch_tokens = MAX_BATCH_TOKENS

    async def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return Embedded([])
        batch = list(texts)
        if len(batch) > self.INLINE_MAX_INPUTS or sum(map(len, batch)) > self.INLINE_MAX_CHARS:
            matrix = await asyncio.to_thread(hash_embed_many, batch, self.dimensions)
        else:
            matrix = hash_embed_many(batch, self.dimensions)
        if matrix.shape != (len(batch), self.dimensions):
            raise RuntimeError(f"hash_embed_many returned shape {matrix.shape}")
        return Embedded([np.asarray(row, dtype=np.float32) for row in matrix])

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------- rate limits

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """Seconds in a Go-style duration (`12ms`, `1.5s`, `6m0s`) or a bare number of seconds.

    None for a missing, malformed or negative value (Azure may send -1).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and math.isfinite(seconds) else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitSnapshot | None:
    """Read `x-ratelimit-*` headers; None when the response carries none of them."""
    snap = RateLimitSnapshot(
        limit_requests=_int_header(headers, "x-ratelimit-limit-requests"),
        limit_tokens=_int_header(headers, "x-ratelimit-limit-tokens"),
        remaining_requests=_int_header(headers, "x-ratelimit-remaining-requests"),
        remaining_tokens=_int_header(headers, "x-ratelimit-remaining-tokens"),
        reset_requests_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
        reset_tokens_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )
    if all(v is None for v in vars(snap).values()):
        return None
    return snap


# --------------------------------------------------------------------------- openai


_SAFE_TOKEN = re.compile(r"[^A-Za-z0-9_.\-]")


def _safe(value: object) -> str:
    """A provider-controlled label (error type/code/param) made safe for our messages."""
    if value is None:
        return "none"
    return _SAFE_TOKEN.sub("_", str(value))[:64] or "none"


def _error_fields(response: httpx.Response) -> tuple[str, str, str]:
    """(type, code, param) from an OpenAI error body; never the message, which may quote input."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return "none", "none", "none"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "none", "none", "none"
    return _safe(error.get("type")), _safe(error.get("code")), _safe(error.get("param"))


def _rejected(message: str) -> PermanentError:
    return PermanentError(ErrorCode.EMBEDDING_REJECTED, message)


class OpenAIEmbedder:
    """Client for an OpenAI-compatible `/v1/embeddings` endpoint.

    `base_url` follows the OpenAI SDK convention and includes the version prefix, e.g.
    `https://api.openai.com/v1` or `http://127.0.0.1:8089/v1`; requests go to
    `{base_url}/embeddings`.

    We call the endpoint with httpx instead of the `openai` SDK on purpose: we need the raw
    response headers (`x-ratelimit-*`, `retry-after-ms`) to feed the shared rate limiter,
    and we own the retry policy (the SDK retries on its own, which would multiply attempts
    with the job-level retries and hide 429s from us). It also keeps one dependency fewer
    and works the same against every compatible server.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str = "text-embedding-3-small",
        dimensions: int = 1536,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        if model == "text-embedding-ada-002" and dimensions != 1536:
            raise ValueError("text-embedding-ada-002 has a fixed 1536 dimensions")
        self._endpoint = require_tls_or_loopback(base_url, "embedding base_url") + "/embeddings"
        self.model = model
        self.version = f"d{dimensions}"
        self.dimensions = dimensions
        self.max_input_tokens = MAX_INPUT_TOKENS
        self.max_batch_inputs = MAX_BATCH_INPUTS
        self.max_batch_tokens = MAX_BATCH_TOKENS
        self.backoff = Backoff(
            max_attempts=max_attempts,
            initial_delay_s=INITIAL_RETRY_DELAY_S,
            max_delay_s=MAX_RETRY_DELAY_S,
            max_inline_wait_s=MAX_INLINE_RETRY_WAIT_S,
        )
        # Only text-embedding-3* accept `dimensions`; others reject or ignore it.
        self._send_dimensions = model.startswith("text-embedding-3")
        self._sleep = sleep
        self._jitter = jitter
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, headers=headers)

    async def __aenter__(self) -> OpenAIEmbedder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def single_attempt(self) -> OpenAIEmbedder:
        """This client (same connection pool) making exactly one request per `embed` call,
        for a caller that owns retries: the worker reserves every attempt from the shared
        rate budget, so no request may leave without a reservation."""
        twin = copy.copy(self)
        twin.backoff = dataclasses.replace(self.backoff, max_attempts=1)
        return twin

    async def embed(self, texts: Sequence[str]) -> Embedded:
        """Embed one batch in one request (retried here on transient faults)."""
        if not texts:
            return Embedded([])
        for i, text in enumerate(texts):
            if not text:
                raise _rejected(f"input {i} is empty; the provider refuses empty strings")
        payload: dict[str, object] = {
            "input": list(texts),
            "model": self.model,
            "encoding_format": "base64",
        }
        if self._send_dimensions:
            payload["dimensions"] = self.dimensions
        content = json.dumps(payload).encode("utf-8")  # ASCII-escaped: lone surrogates survive
        try:
            return await with_retries(
                lambda: self._post(content, len(texts)),
                self.backoff,
                what="embedding request",
                sleep=self._sleep,
                jitter=self._jitter,
                log_extra={"action": "embed_retry", "inputs": len(texts)},
            )
        except Retryable as failure:
            error = RateLimited if failure.throttled else TransientError
            raise error(
                ErrorCode.EMBEDDING_UNAVAILABLE,
                f"embedding provider unavailable: {failure.reason}",
                retry_after=failure.retry_after,
            ) from failure

    async def _post(self, content: bytes, count: int) -> Embedded:
        try:
            response = await self._client.post(self._endpoint, content=content)
        except httpx.TransportError as exc:  # connection errors and timeouts
            raise Retryable(type(exc).__name__) from exc
        if response.is_success:
            return self._decode(response, count)
        self._raise_for_status(response)

    def _raise_for_status(self, response: httpx.Response) -> NoReturn:
        status = response.status_code
        err_type, err_code, param = _error_fields(response)
        detail = f"HTTP {status} type={err_type} code={err_code}"
        if status == 429 and "insufficient_quota" in (err_type, err_code):
            raise QuotaExhausted(
                ErrorCode.EMBEDDING_QUOTA,
                "provider quota exhausted",
                retry_after=QUOTA_RETRY_AFTER_S,
            )
        if status in (408, 409, 429) or status >= 500:
            wait = retry_after_seconds(response.headers)
            raise Retryable(detail, wait, throttled=status == 429)
        if status in (401, 403):
            raise PermanentError(
                ErrorCode.EMBEDDING_AUTH, f"provider refused our credentials: {detail}"
            )
        if status in (400, 413, 422):
            raise InputRejected(
                ErrorCode.EMBEDDING_REJECTED,
                f"provider rejected the input: {detail} param={param}",
            )
        hint = " (check that base_url ends with the API prefix, e.g. /v1)" if status == 404 else ""
        raise _rejected(f"provider rejected the request: {detail} param={param}{hint}")

    def _decode(self, response: httpx.Response, count: int) -> Embedded:
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            raise _rejected("malformed provider response: not JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != count:
            got = len(data) if isinstance(data, list) else "no"
            raise _rejected(f"provider returned {got} embeddings for {count} inputs")
        vectors: list[Vector | None] = [None] * count
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
                raise _rejected(f"provider returned a bad or repeated embedding index {index!r}")
            vectors[index] = self._vector(item.get("embedding"), index)
        usage = body.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        return Embedded(
            [v for v in vectors if v is not None],
            usage_tokens=tokens if isinstance(tokens, int) else None,
            rate_limit=parse_rate_limit_headers(response.headers),
        )

    def _vector(self, raw: object, index: int) -> Vector:
        if isinstance(raw, str):
            try:
                buf = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise _rejected(f"embedding {index}: invalid base64") from None
            if len(buf) % 4:
                raise _rejected(f"embedding {index}: {len(buf)} bytes is not float32 data")
            vec = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif isinstance(raw, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in raw
        ):
            vec = np.asarray(raw, dtype=np.float32)
        else:
            raise _rejected(f"embedding {index}: neither base64 nor a list of numbers")
        if vec.shape != (self.dimensions,):
            raise _rejected(
                f"embedding {index} has {vec.shape[0]} dimensions, expected {self.dimensions} "
                f"(model {self.model})"
            )
        if not np.isfinite(vec).all():
            raise _rejected(f"embedding {index} contains NaN or infinity")
        return vec
