"""The fake OpenAI server as a real process, driven by OpenAIEmbedder and raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from docingest.clients.embedders import OpenAIEmbedder, parse_duration, parse_rate_limit_headers
from docingest.domain.errors import ErrorCode, PermanentError, TransientError
from docingest.pipeline.tokens import count_tokens
from docingest.testing.fake_openai import (
    FakeOpenAIConfig,
    create_app,
    deterministic_vector,
    go_duration,
)
from docingest.testing.fake_openai import app as fake_app
from docingest.testing.fake_openai.config import FaultConfig
from docingest.testing.procs import free_port, run_process, wait_http_ok

API_KEY = "sk-fake-integration"
MODEL = "text-embedding-3-small"


@dataclass(frozen=True)
class FakeServer:
    root: str
    http: httpx.Client

    @property
    def v1(self) -> str:
        return f"{self.root}/v1"

    def control(self, **changes: object) -> dict[str, object]:
        response = self.http.post(f"{self.root}/control", json=changes)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    def stats(self) -> dict[str, object]:
        body: dict[str, object] = self.http.get(f"{self.root}/stats").json()
        return body

    def embed_raw(self, body: dict[str, object], key: str | None = API_KEY) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.post(f"{self.v1}/embeddings", json=body, headers=headers)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "docingest.testing.fake_openai", "--port", str(port)]
    args += ["--host", "127.0.0.1", "--api-key", API_KEY]
    with (
        run_process(args, ready_url=f"{root}/healthz", timeout_s=30) as proc,
        httpx.Client(timeout=30) as http,
    ):
        yield FakeServer(root, http)
        assert proc.poll() is None, "the fake died during the tests"


@pytest.fixture
def fake(server: FakeServer) -> FakeServer:
    server.http.post(f"{server.root}/control/reset").raise_for_status()
    server.http.post(f"{server.root}/stats/reset").raise_for_status()
    return server


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def embedder(fake: FakeServer, sleeps: Sleeps) -> AsyncIterator[OpenAIEmbedder]:
    async with OpenAIEmbedder(fake.v1, API_KEY, MODEL, 1536, sleep=sleeps) as emb:
        yield emb


TEXTS = ["Annual deductible: $1,500 per member.", "Specialist copay: $40.", "Out-of-network"]


async def test_vectors_are_deterministic_unit_norm(
    fake: FakeServer, embedder: OpenAIEmbedder
) -> None:
    answered = await embedder.embed(TEXTS)
    first = answered.vectors
    second = (await embedder.embed(TEXTS)).vectors
    assert len(first) == 3
    for a, b, text in zip(first, second, TEXTS, strict=True):
        assert a.shape == (1536,)
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, deterministic_vector(MODEL, text, 1536))
        assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-5)
    assert not np.array_equal(first[0], first[1])
    stats = fake.stats()
    assert stats["requests"] == 2
    assert stats["inputs"] == 6
    assert stats["tokens"] == 2 * sum(count_tokens(t) for t in TEXTS)
    assert stats["status_counts"] == {"200": 2}
    assert answered.usage_tokens == sum(count_tokens(t) for t in TEXTS)


def test_float_and_base64_encodings_are_equal(fake: FakeServer) -> None:
    body: dict[str, object] = {"input": TEXTS, "model": MODEL}
    floats = fake.embed_raw({**body, "encoding_format": "float"})
    packed = fake.embed_raw({**body, "encoding_format": "base64"})
    default = fake.embed_raw(body)
    assert floats.status_code == packed.status_code == default.status_code == 200
    payload = packed.json()
    assert payload["object"] == "list"
    assert payload["model"] == MODEL
    assert payload["usage"]["prompt_tokens"] == payload["usage"]["total_tokens"] > 0
    for f_item, b_item, d_item in zip(
        floats.json()["data"], payload["data"], default.json()["data"], strict=True
    ):
        assert f_item["object"] == "embedding"
        assert f_item["index"] == b_item["index"]
        as_float = np.asarray(f_item["embedding"], dtype=np.float32)
        as_b64 = np.frombuffer(base64.b64decode(b_item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(as_float, as_b64)
        assert isinstance(d_item["embedding"], list)  # float is the API default


async def test_dimensions_are_honoured(fake: FakeServer, sleeps: Sleeps) -> None:
    async with OpenAIEmbedder(fake.v1, API_KEY, MODEL, 256, sleep=sleeps) as emb:
        (short,) = (await emb.embed([TEXTS[0]])).vectors
    assert short.shape == (256,)
    assert float(np.linalg.norm(short)) == pytest.approx(1.0, abs=1e-5)
    full = deterministic_vector(MODEL, TEXTS[0], 1536)
    # Matryoshka-style: the shortened vector is the renormalised prefix of the full one.
    prefix = full[:256] / np.linalg.norm(full[:256])
    np.testing.assert_allclose(short, prefix, atol=1e-6)
    large = fake.embed_raw({"input": "x", "model": "text-embedding-3-large"})
    assert len(large.json()["data"][0]["embedding"]) == 3072
    ada = fake.embed_raw({"input": "x", "model": "text-embedding-ada-002", "dimensions": 256})
    assert ada.status_code == 400
    too_big = fake.embed_raw({"input": "x", "model": MODEL, "dimensions": 1537})
    assert too_big.json()["error"]["param"] == "dimensions"


async def test_injected_429_is_retried_after_retry_after_ms(
    fake: FakeServer, embedder: OpenAIEmbedder, sleeps: Sleeps
) -> None:
    fake.control(fail_429_next=2, retry_after_ms=30)
    vectors = (await embedder.embed(TEXTS[:1])).vectors
    assert len(vectors) == 1
    assert sleeps.calls == [0.03, 0.03]
    stats = fake.stats()
    assert stats["requests"] == 3
    assert stats["status_counts"] == {"429": 2, "200": 1}
    assert stats["inputs"] == 1


def test_injected_429_has_the_real_shape_and_headers(fake: FakeServer) -> None:
    fake.control(fail_429_next=1, retry_after_ms=1500)
    response = fake.embed_raw({"input": "x", "model": MODEL})
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert set(error) == {"message", "type", "param", "code"}
    assert fake.control()["fail_429_next"] == 0


async def test_injected_500s_retried_then_exhausted(
    fake: FakeServer, embedder: OpenAIEmbedder, sleeps: Sleeps
) -> None:
    fake.control(fail_500_next=1)
    assert len((await embedder.embed(TEXTS[:2])).vectors) == 2
    assert len(sleeps.calls) == 1
    fake.control(fail_500_next=5)
    with pytest.raises(TransientError) as info:
        await embedder.embed(TEXTS[:2])
    assert info.value.code is ErrorCode.EMBEDDING_UNAVAILABLE
    assert fake.control()["fail_500_next"] == 2  # three attempts used three of the five
    assert fake.stats()["status_counts"] == {"500": 4, "200": 1}
    assert fake.stats()["faults_injected"] == {"500": 4}  # served, not merely armed


async def test_billing_counts_each_text_and_every_repeat(
    fake: FakeServer, embedder: OpenAIEmbedder
) -> None:
    await embedder.embed(TEXTS)
    await embedder.embed([TEXTS[0], "a new text"])
    stats = fake.stats()
    assert stats["inputs"] == 5
    assert stats["distinct_texts_billed"] == 4 and stats["inputs_billed_again"] == 1
    fake.control(fail_429_next=1)
    await embedder.embed([TEXTS[1]])  # the refused attempt is not billed, the retry is
    assert fake.stats()["inputs_billed_again"] == 2


def test_latency_jitter_stays_within_its_bounds(fake: FakeServer) -> None:
    fake.control(latency_ms=100, latency_jitter_ms=200)
    took = []
    for _ in range(5):
        response = fake.embed_raw({"model": MODEL, "input": "x"})
        assert response.status_code == 200
        took.append(int(response.headers["openai-processing-ms"]))
    assert all(ms >= 100 for ms in took) and max(took) < 1000


async def test_poison_substring_is_a_permanent_rejection(
    fake: FakeServer, embedder: OpenAIEmbedder
) -> None:
    fake.control(poison_substring="TOXIC")
    with pytest.raises(PermanentError) as info:
        await embedder.embed(["fine text", "this has TOXIC content"])
    assert info.value.code is ErrorCode.EMBEDDING_REJECTED
    assert "TOXIC" not in str(info.value)
    assert "invalid_request_error" in info.value.message
    assert fake.stats()["status_counts"] == {"400": 1}
    assert len((await embedder.embed(["fine text"])).vectors) == 1


async def test_quota_exhausted_is_not_retried(
    fake: FakeServer, embedder: OpenAIEmbedder, sleeps: Sleeps
) -> None:
    fake.control(quota_exhausted=True)
    with pytest.raises(TransientError) as info:
        await embedder.embed(TEXTS[:1])
    assert info.value.retry_after == 300
    assert sleeps.calls == []
    assert fake.stats()["status_counts"] == {"429": 1}


async def test_wrong_key_is_an_auth_error(fake: FakeServer) -> None:
    async with OpenAIEmbedder(fake.v1, "sk-wrong", MODEL, 1536) as emb:
        with pytest.raises(PermanentError) as info:
            await emb.embed(TEXTS[:1])
    assert info.value.code is ErrorCode.EMBEDDING_AUTH
    missing = fake.embed_raw({"input": "x", "model": MODEL}, key=None)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"


async def test_hung_request_times_out_and_is_retried(fake: FakeServer, sleeps: Sleeps) -> None:
    fake.control(hang_next=1, hang_seconds=1.0)
    timeout = httpx.Timeout(0.2, connect=5.0)
    async with OpenAIEmbedder(fake.v1, API_KEY, MODEL, 1536, timeout=timeout, sleep=sleeps) as emb:
        vectors = (await emb.embed(TEXTS[:1])).vectors
    assert len(vectors) == 1
    assert len(sleeps.calls) == 1  # one timeout, then success
    # Wait for the hung handler to finish so it does not leak into the next test's stats.
    deadline = time.monotonic() + 10
    while fake.stats()["requests"] != 2:
        assert time.monotonic() < deadline, "the hung request never completed"
        time.sleep(0.05)


def test_request_limits_answer_400(fake: FakeServer) -> None:
    too_many = fake.embed_raw({"input": ["x"] * 2049, "model": MODEL})
    assert too_many.status_code == 400
    error = too_many.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "input"
    assert "2048" in error["message"]
    # Exactly 2048 is fine (base64 and 8 dimensions keep the 2048 answers small).
    small: dict[str, object] = {"model": MODEL, "encoding_format": "base64", "dimensions": 8}
    full = fake.embed_raw({"input": ["x"] * 2048, **small})
    assert full.status_code == 200
    assert len(full.json()["data"]) == 2048

    assert fake.embed_raw({"input": "", "model": MODEL}).status_code == 400
    assert fake.embed_raw({"input": ["ok", ""], "model": MODEL}).status_code == 400
    assert fake.embed_raw({"input": [[1, 2, 3]], "model": MODEL}).status_code == 400
    assert (
        fake.embed_raw({"input": "x", "model": MODEL, "encoding_format": "hex"}).status_code == 400
    )

    long_text = "policy " * 8200
    assert count_tokens(long_text) > 8192
    too_long = fake.embed_raw({"input": [long_text], "model": MODEL})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"

    piece = "policy " * 8000
    n = count_tokens(piece)
    assert n <= 8192  # each input is fine on its own; only the sum is over the cap
    count = 300_000 // n + 1
    too_much = fake.embed_raw({"input": [piece] * count, "model": MODEL})
    assert too_much.status_code == 400
    assert "300000" in too_much.json()["error"]["message"]
    assert fake.stats()["status_counts"] == {"400": 7, "200": 1}


def test_rate_limit_headers_and_budget(fake: FakeServer) -> None:
    ok = fake.embed_raw({"input": "x", "model": MODEL})
    snap = parse_rate_limit_headers(ok.headers)
    assert snap is not None
    assert snap.limit_requests == 1_000_000
    assert None not in (snap.remaining_requests, snap.remaining_tokens)
    assert snap.reset_requests_s is not None
    assert snap.reset_tokens_s is not None
    for name in ("x-request-id", "openai-processing-ms"):
        assert name in ok.headers

    fake.control(rpm=3, tpm=1000)
    remaining = []
    resets = []
    for _ in range(3):
        response = fake.embed_raw({"input": "x", "model": MODEL})
        assert response.status_code == 200
        snap = parse_rate_limit_headers(response.headers)
        assert snap is not None
        assert (snap.limit_requests, snap.limit_tokens) == (3, 1000)
        remaining.append(snap.remaining_requests)
        resets.append(snap.reset_requests_s)
    assert remaining == [2, 1, 0]
    # Each request takes 20 s of a 3-per-minute budget to refill.
    assert [round(r or 0) for r in resets] == [20, 40, 60]
    limited = fake.embed_raw({"input": "x", "model": MODEL})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "requests"
    assert 15 <= int(limited.headers["retry-after-ms"]) / 1000 <= 20
    # Errors carry the headers too.
    assert parse_rate_limit_headers(limited.headers) is not None

    fake.control(rpm=1000, tpm=10)
    over_tokens = fake.embed_raw({"input": "x " * 50, "model": MODEL})
    assert over_tokens.status_code == 429
    assert over_tokens.json()["error"]["type"] == "tokens"


def test_control_rejects_unknown_keys_and_bad_values(fake: FakeServer) -> None:
    bad = fake.http.post(f"{fake.root}/control", json={"fail_429_nxt": 1})
    assert bad.status_code == 400
    assert "fail_429_nxt" in bad.json()["error"]["message"]
    for body in ({"fail_500_next": -1}, {"quota_exhausted": 1}, {"poison_substring": ""}):
        assert fake.http.post(f"{fake.root}/control", json=body).status_code == 400
    assert fake.control()["fail_500_next"] == 0
    fake.control(latency_ms=5, fail_500_next=3)
    reset = fake.http.post(f"{fake.root}/control/reset").json()
    assert (reset["latency_ms"], reset["fail_500_next"]) == (0.0, 0)


def test_procs_wait_raises_timeout_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    with pytest.raises(TimeoutError, match=re.escape(url)):
        wait_http_ok(url, 0.3)


def test_run_process_reports_an_early_exit() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    args = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(RuntimeError, match="code 3"), run_process(args, None, url, 10):
        pass


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3661, "1h1m1s"),
    ],
)
def test_go_duration_round_trips(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


async def test_app_runs_in_process() -> None:
    app = create_app(FakeOpenAIConfig(api_key=None))
    transport = httpx.ASGITransport(app=app)
    async with OpenAIEmbedder("http://127.0.0.1/v1", None, MODEL, 64, transport=transport) as emb:
        (vec,) = (await emb.embed(["in process"])).vectors
    np.testing.assert_array_equal(vec, deterministic_vector(MODEL, "in process", 64))


async def test_the_latency_includes_the_fakes_own_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real provider's latency includes its own work, so the fake parses the request while
    its delay runs: the delay below ends only once parsing has begun (it gives up after 5 s,
    which a fake that parsed after the delay would always reach)."""
    parsing = threading.Event()
    parse = fake_app.parse_embedding_request

    def observed_parse(raw: bytes) -> object:
        parsing.set()
        return parse(raw)

    began_within_delay: list[bool] = []

    async def delay(seconds: float) -> None:
        began_within_delay.append(await asyncio.to_thread(parsing.wait, 5))

    monkeypatch.setattr(fake_app, "parse_embedding_request", observed_parse)
    monkeypatch.setattr(fake_app, "_delay", delay)
    app = create_app(FakeOpenAIConfig(api_key=None, faults=FaultConfig(latency_ms=50)))
    transport = httpx.ASGITransport(app=app)
    async with OpenAIEmbedder("http://127.0.0.1/v1", None, MODEL, 64, transport=transport) as emb:
        (vec,) = (await emb.embed(["parsed while waiting"])).vectors
    assert began_within_delay == [True]
    np.testing.assert_array_equal(vec, deterministic_vector(MODEL, "parsed while waiting", 64))
