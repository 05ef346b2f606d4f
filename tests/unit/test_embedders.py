"""OpenAIEmbedder against httpx.MockTransport, and HashEmbedder."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from docingest.clients.embedders import (
    Embedder,
    HashEmbedder,
    OpenAIEmbedder,
    parse_rate_limit_headers,
)
from docingest.clients.http_retry import retry_after_seconds
from docingest.domain.errors import (
    ErrorCode,
    InputRejected,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    TransientError,
)

BASE = "https://api.example.test/v1"
SECRET_TEXT = "Member SSN 123-45-6789 diagnosis"


def b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def ok_body(vectors: list[list[float]], *, encode: bool = True, order: list[int] | None = None):
    order = order if order is not None else list(range(len(vectors)))
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": b64(vectors[i]) if encode else vectors[i],
            }
            for i in order
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }


def error_body(type_: str, code: str | None, message: str = "bad") -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class Recorder:
    """A MockTransport handler that answers from a script and records requests."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make(
    recorder: Recorder,
    sleeps: Sleeps | None = None,
    *,
    dimensions: int = 4,
    model: str = "text-embedding-3-small",
    jitter: Callable[[], float] = lambda: 0.0,
    max_attempts: int = 3,
) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        BASE,
        "sk-test",
        model,
        dimensions,
        transport=httpx.MockTransport(recorder),
        sleep=sleeps or Sleeps(),
        jitter=jitter,
        max_attempts=max_attempts,
    )


KNOWN = [[0.5, -1.25, 3.0, 1e-3], [0.1, 0.2, -0.3, 1e6]]


async def test_base64_decodes_little_endian_float32_exactly() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN)))
    emb = make(rec)
    result = await emb.embed(["a", "b"])
    await emb.aclose()
    vectors = result.vectors
    assert [v.dtype for v in vectors] == [np.float32, np.float32]
    np.testing.assert_array_equal(vectors[0], np.asarray(KNOWN[0], dtype=np.float32))
    np.testing.assert_array_equal(vectors[1], np.asarray(KNOWN[1], dtype=np.float32))
    assert result.usage_tokens == 7
    assert result.rate_limit is None  # the response carried no x-ratelimit-* headers


async def test_request_shape_auth_dimensions_and_base64() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN[:1])))
    emb = make(rec)
    await emb.embed(["hello"])
    await emb.aclose()
    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/embeddings"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert rec.bodies[0] == {
        "input": ["hello"],
        "model": "text-embedding-3-small",
        "encoding_format": "base64",
        "dimensions": 4,
    }


async def test_dimensions_not_sent_for_other_models() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN[:1])))
    emb = make(rec, model="nomic-embed-text")
    await emb.embed(["hello"])
    await emb.aclose()
    assert "dimensions" not in rec.bodies[0]
    assert emb.version == "d4"


async def test_float_lists_accepted_and_sorted_by_index() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN, encode=False, order=[1, 0])))
    emb = make(rec)
    vectors = (await emb.embed(["first", "second"])).vectors
    await emb.aclose()
    np.testing.assert_array_equal(vectors[0], np.asarray(KNOWN[0], dtype=np.float32))
    np.testing.assert_array_equal(vectors[1], np.asarray(KNOWN[1], dtype=np.float32))


async def test_retry_after_ms_is_honoured_before_retry_after() -> None:
    limited = httpx.Response(
        429,
        json=error_body("requests", "rate_limit_exceeded"),
        headers={"retry-after-ms": "250", "retry-after": "7"},
    )
    rec = Recorder(limited, httpx.Response(200, json=ok_body(KNOWN[:1])))
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    vectors = (await emb.embed(["x"])).vectors
    await emb.aclose()
    assert sleeps.calls == [0.25]
    assert len(rec.requests) == 2
    assert len(vectors) == 1


async def test_retry_after_seconds_used_without_ms() -> None:
    limited = httpx.Response(
        429, json=error_body("tokens", "rate_limit_exceeded"), headers={"retry-after": "3"}
    )
    rec = Recorder(limited, httpx.Response(200, json=ok_body(KNOWN[:1])))
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    await emb.embed(["x"])
    await emb.aclose()
    assert sleeps.calls == [3.0]


async def test_exponential_backoff_without_hint_and_transport_errors_retried() -> None:
    rec = Recorder(
        httpx.Response(503, json=error_body("server_error", None)),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=ok_body(KNOWN[:1])),
    )
    sleeps = Sleeps()
    emb = make(rec, sleeps, jitter=lambda: 1.0)
    await emb.embed(["x"])
    await emb.aclose()
    assert sleeps.calls == [0.5 * 0.75, 1.0 * 0.75]
    assert len(rec.requests) == 3


async def test_5xx_three_times_raises_transient_unavailable() -> None:
    rec = Recorder(*(httpx.Response(500, json=error_body("server_error", None)) for _ in range(3)))
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    with pytest.raises(TransientError) as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_UNAVAILABLE
    assert not isinstance(info.value, RateLimited)  # a failure of the service, not a throttle
    assert info.value.retry_after is None
    assert "HTTP 500" in info.value.message
    assert len(rec.requests) == 3
    assert sleeps.calls == [0.5, 1.0]


async def test_exhausted_retries_carry_the_server_hint() -> None:
    rec = Recorder(
        *(
            httpx.Response(
                429,
                json=error_body("requests", "rate_limit_exceeded"),
                headers={"retry-after": "2"},
            )
            for _ in range(2)
        )
    )
    emb = make(rec, max_attempts=2)
    with pytest.raises(RateLimited) as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.retry_after == 2.0


async def test_single_attempt_sends_one_request_and_400_is_input_rejected() -> None:
    rec = Recorder(
        httpx.Response(500, json=error_body("server_error", None)),
        httpx.Response(400, json=error_body("invalid_request_error", "invalid_input")),
    )
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    once = emb.single_attempt()
    with pytest.raises(TransientError):
        await once.embed(["x"])
    with pytest.raises(InputRejected) as info:
        await once.embed(["x"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED
    assert len(rec.requests) == 2 and sleeps.calls == []
    assert emb.backoff.max_attempts == 3  # the original keeps its own retries


async def test_long_retry_after_is_not_waited_inline() -> None:
    rec = Recorder(
        httpx.Response(
            429, json=error_body("requests", "rate_limit_exceeded"), headers={"retry-after": "90"}
        )
    )
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    with pytest.raises(TransientError) as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.retry_after == 90.0
    assert sleeps.calls == []
    assert len(rec.requests) == 1


async def test_insufficient_quota_is_not_retried() -> None:
    rec = Recorder(httpx.Response(429, json=error_body("insufficient_quota", "insufficient_quota")))
    sleeps = Sleeps()
    emb = make(rec, sleeps)
    with pytest.raises(QuotaExhausted) as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_QUOTA
    assert info.value.message == "provider quota exhausted"
    assert info.value.retry_after == 300
    assert len(rec.requests) == 1
    assert sleeps.calls == []


async def test_old_quota_body_with_null_code_is_recognised() -> None:
    rec = Recorder(httpx.Response(429, json=error_body("insufficient_quota", None)))
    emb = make(rec)
    with pytest.raises(TransientError, match="quota"):
        await emb.embed(["x"])
    await emb.aclose()
    assert len(rec.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_permanent(status: int) -> None:
    rec = Recorder(
        httpx.Response(status, json=error_body("invalid_request_error", "invalid_api_key"))
    )
    emb = make(rec)
    with pytest.raises(PermanentError) as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_AUTH
    assert "invalid_api_key" in info.value.message
    assert len(rec.requests) == 1


async def test_400_is_rejected_without_leaking_input_text() -> None:
    # The provider's message quotes the input; ours must not.
    body = error_body("invalid_request_error", "context_length_exceeded", message=SECRET_TEXT)
    rec = Recorder(httpx.Response(400, json=body))
    emb = make(rec)
    with pytest.raises(PermanentError) as info:
        await emb.embed([SECRET_TEXT])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED
    assert "context_length_exceeded" in info.value.message
    assert "invalid_request_error" in info.value.message
    assert "123-45-6789" not in str(info.value)
    assert len(rec.requests) == 1


async def test_404_hints_at_the_base_url() -> None:
    rec = Recorder(httpx.Response(404, text="not found"))
    emb = make(rec)
    with pytest.raises(PermanentError, match="/v1") as info:
        await emb.embed(["x"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED


async def test_count_mismatch_is_rejected() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN[:1])))
    emb = make(rec)
    with pytest.raises(PermanentError, match="1 embeddings for 2 inputs") as info:
        await emb.embed(["a", "b"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED


async def test_dimension_mismatch_is_rejected() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body([[1.0, 0.0, 0.0]])))
    emb = make(rec, dimensions=4)
    with pytest.raises(PermanentError, match="3 dimensions, expected 4") as info:
        await emb.embed(["a"])
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED


async def test_repeated_index_is_rejected() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN, order=[0, 0])))
    emb = make(rec)
    with pytest.raises(PermanentError, match="index"):
        await emb.embed(["a", "b"])
    await emb.aclose()


async def test_empty_input_refused_before_any_call() -> None:
    rec = Recorder()
    emb = make(rec)
    with pytest.raises(PermanentError) as info:
        await emb.embed(["ok", ""])
    assert (await emb.embed([])).vectors == []
    await emb.aclose()
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED
    assert rec.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://api.openai.com/v1", "http://10.0.0.5:8000/v1", "ftp://127.0.0.1/v1", "http:///v1"],
)
def test_insecure_base_urls_refused(url: str) -> None:
    with pytest.raises(ValueError):
        OpenAIEmbedder(url, "sk-test")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8089/v1",
        "http://127.3.2.1:8089/v1",
        "http://localhost:8089/v1",
        "http://[::1]:8089/v1",
    ],
)
async def test_https_and_loopback_base_urls_accepted(url: str) -> None:
    emb = OpenAIEmbedder(url, "sk-test")
    await emb.aclose()
    assert emb.model == "text-embedding-3-small"
    assert emb.version == "d1536"
    assert (emb.max_batch_inputs, emb.max_batch_tokens, emb.max_input_tokens) == (
        256,
        250_000,
        8191,
    )


async def test_rate_limit_headers_are_kept() -> None:
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    rec = Recorder(httpx.Response(200, json=ok_body(KNOWN[:1]), headers=headers))
    emb = make(rec)
    snap = (await emb.embed(["x"])).rate_limit
    await emb.aclose()
    assert snap is not None
    assert (snap.limit_requests, snap.remaining_tokens) == (60, 149984)
    assert (snap.reset_requests_s, snap.reset_tokens_s) == (1.0, 360.0)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "0", "retry-after": "4"})) == 4.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"  # 10 s after `now`
    assert retry_after_seconds(httpx.Headers({"retry-after": date}), now=1445412480.0) == 10.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "never"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None
    assert parse_rate_limit_headers(httpx.Headers({})) is None


# --------------------------------------------------------------------------- hash


async def test_hash_embedder_is_deterministic_and_unit_norm() -> None:
    emb = HashEmbedder(384)
    assert isinstance(emb, Embedder)
    assert emb.model == "hash-lexical"
    assert emb.version.endswith("-d384")
    texts = ["deductible applies to inpatient care", "copay for specialist visits", "x y z"]
    first = (await emb.embed(texts)).vectors
    second = (await emb.embed(list(reversed(texts)))).vectors
    await emb.aclose()
    assert len(first) == 3
    for i, vec in enumerate(first):
        assert vec.dtype == np.float32
        assert vec.shape == (384,)
        assert float(np.linalg.norm(vec)) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(vec, second[2 - i])
    assert not np.array_equal(first[0], first[1])


async def test_hash_embedder_thread_path_matches_inline_path() -> None:
    emb = HashEmbedder(64)
    texts = [f"benefit clause number {i}" for i in range(HashEmbedder.INLINE_MAX_INPUTS + 5)]
    big = (await emb.embed(texts)).vectors  # above the inline threshold: hashed in a thread
    small = [(await emb.embed([t])).vectors[0] for t in texts[:3]]
    assert len(big) == len(texts)
    for a, b in zip(big[:3], small, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (await emb.embed([])).vectors == []


async def test_openai_embedder_satisfies_the_protocol() -> None:
    async with OpenAIEmbedder("http://127.0.0.1:1/v1", None) as emb:
        assert isinstance(emb, Embedder)
