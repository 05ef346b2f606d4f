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
* Vectors are deterministic: unit-norm float32 drawn from numpy's default_rng seeded with
  sha256(model, text). A shorter `dimensions` is the renormalised prefix of the full
  vector, like the real models' Matryoshka truncation.
* `x-ratelimit-*` headers on every `/v1` response, from an in-memory token bucket per
  minute (`--rpm`, `--tpm`); a request over budget gets a real-looking 429.

Test-only routes: `GET|POST /control`, `POST /control/reset`, `GET /stats`,
`POST /stats/reset`, `GET /healthz`. See `FaultConfig` for the fault keys.

Request bodies carry documents' text: nothing here logs them, only counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from docingest.pipeline.tokens import count_tokens
from docingest.testing.fake_ledgers import BilledTexts, FaultCounter, jittered_s

logger = logging.getLogger(__name__)

MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
DEFAULT_DIMENSIONS = 1536
STATS_WINDOW_S = 60.0  # the "per minute" of RPM/TPM, as a sliding window
MAX_DIMENSIONS = 16_000  # pgvector's `vector` column limit; unknown models may ask for up to this
NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

FaultKind = Literal["hang", "500", "429", "quota"]


# --------------------------------------------------------------------------- config


@dataclass
class FaultConfig:
    """Faults, set by command-line flags and merged at runtime by `POST /control`.

    Counters (`*_next`) count down one per `/v1/embeddings` request that passes auth.
    Precedence when several are armed: hang, then 500, then 429, then quota.
    """

    latency_ms: float = 0.0  # added to every /v1/embeddings request
    latency_jitter_ms: float = 0.0  # plus a uniform draw from [0, latency_jitter_ms]
    fail_429_next: int = 0  # 429 rate_limit_exceeded with retry-after / retry-after-ms
    fail_500_next: int = 0  # 500 server_error
    quota_exhausted: bool = False  # every request: 429 insufficient_quota (until cleared)
    poison_substring: str | None = None  # an input containing it -> 400 invalid_request_error
    hang_next: int = 0  # hold the response for hang_seconds, then answer normally
    hang_seconds: float = 30.0
    retry_after_ms: int = 20  # the hint sent with injected 429s


@dataclass
class FakeOpenAIConfig:
    api_key: str | None = None  # when set, `Authorization: Bearer <api_key>` is required
    rpm: int = 1_000_000
    tpm: int = 1_000_000_000
    faults: FaultConfig = field(default_factory=FaultConfig)


_INT_KEYS = frozenset({"fail_429_next", "fail_500_next", "hang_next", "retry_after_ms"})
_NUMBER_KEYS = frozenset({"latency_ms", "latency_jitter_ms", "hang_seconds"})
_LIMIT_KEYS = frozenset({"rpm", "tpm"})
CONTROL_KEYS = frozenset(
    {f.name for f in dataclasses.fields(FaultConfig)} | _LIMIT_KEYS,
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_control_value(key: str, value: object) -> None:
    if key in _INT_KEYS and not (isinstance(value, int) and _is_int(value) and value >= 0):
        raise ValueError(f"{key} must be an integer >= 0")
    if key in _LIMIT_KEYS and not (isinstance(value, int) and _is_int(value) and value > 0):
        raise ValueError(f"{key} must be an integer > 0")
    if key in _NUMBER_KEYS and not (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    ):
        raise ValueError(f"{key} must be a number >= 0")
    if key == "quota_exhausted" and not isinstance(value, bool):
        raise ValueError("quota_exhausted must be a boolean")
    if key == "poison_substring" and not (
        value is None or (isinstance(value, str) and value != "")
    ):
        raise ValueError("poison_substring must be a non-empty string or null")


def validate_control(update: object) -> dict[str, object]:
    """Check a `/control` body; return it as a dict or raise ValueError (no value echoed)."""
    if not isinstance(update, dict):
        raise ValueError("control body must be a JSON object")
    unknown = sorted(str(k) for k in update if k not in CONTROL_KEYS)
    if unknown:
        raise ValueError(f"unknown control keys: {', '.join(unknown)}")
    for key, value in update.items():
        _check_control_value(key, value)
    return dict(update)


# --------------------------------------------------------------------------- state


class _Bucket:
    """A per-minute token bucket: full at `capacity`, refilling at capacity/60 per second."""

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.level = float(capacity)
        self.updated = now

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(float(self.capacity), self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def reset_after(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


class _SlidingWindow:
    """Requests and tokens in the trailing `span` seconds, and the most ever seen at once."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._entries: collections.deque[tuple[float, int]] = collections.deque()
        self._tokens = 0
        self.max_requests = 0
        self.max_tokens = 0

    def add(self, now: float, tokens: int) -> None:
        self._entries.append((now, tokens))
        self._tokens += tokens
        while self._entries and self._entries[0][0] <= now - self.span:
            self._tokens -= self._entries.popleft()[1]
        self.max_requests = max(self.max_requests, len(self._entries))
        self.max_tokens = max(self.max_tokens, self._tokens)


@dataclass(frozen=True)
class BudgetDenial:
    kind: Literal["requests", "tokens"]
    limit: int
    used: int
    requested: int
    retry_after_s: float


class FakeOpenAIState:
    """Everything the fake remembers: fault config, rate-limit buckets and statistics."""

    def __init__(
        self, config: FakeOpenAIConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.faults = dataclasses.replace(config.faults)
        self.rpm = config.rpm
        self.tpm = config.tpm
        now = clock()
        self._requests = _Bucket(self.rpm, now)
        self._tokens = _Bucket(self.tpm, now)
        self._stats_requests = 0
        self._stats_inputs = 0
        self._stats_tokens = 0
        self._status_counts: dict[str, int] = {}
        self._window = _SlidingWindow(STATS_WINDOW_S)
        self._denials = 0
        self.injected = FaultCounter()
        self.billed = BilledTexts()

    # control ------------------------------------------------------------------
    def control_snapshot(self) -> dict[str, object]:
        with self._lock:
            return {**dataclasses.asdict(self.faults), "rpm": self.rpm, "tpm": self.tpm}

    def apply_control(self, update: object) -> dict[str, object]:
        checked = validate_control(update)
        limits = {k: v for k, v in checked.items() if k in _LIMIT_KEYS}
        faults = {k: v for k, v in checked.items() if k not in _LIMIT_KEYS}
        with self._lock:
            merged = dataclasses.replace(self.faults)
            for key, value in faults.items():
                setattr(merged, key, value)  # types checked by validate_control
            self.faults = merged
            if limits:
                rpm, tpm = limits.get("rpm", self.rpm), limits.get("tpm", self.tpm)
                assert isinstance(rpm, int) and isinstance(tpm, int)  # checked above
                self._set_limits(rpm, tpm)
        return self.control_snapshot()

    def reset_control(self) -> dict[str, object]:
        """Back to the start-up configuration (the command-line flags)."""
        with self._lock:
            self.faults = dataclasses.replace(self.config.faults)
            self._set_limits(self.config.rpm, self.config.tpm)
        return self.control_snapshot()

    def _set_limits(self, rpm: int, tpm: int) -> None:
        self.rpm, self.tpm = rpm, tpm
        now = self._clock()
        self._requests = _Bucket(rpm, now)
        self._tokens = _Bucket(tpm, now)

    def take_fault(self) -> FaultKind | None:
        """Consume one armed fault for this request, if any."""
        with self._lock:
            f = self.faults
            kind: FaultKind | None = None
            if f.hang_next > 0:
                f.hang_next -= 1
                kind = "hang"
            elif f.fail_500_next > 0:
                f.fail_500_next -= 1
                kind = "500"
            elif f.fail_429_next > 0:
                f.fail_429_next -= 1
                kind = "429"
            elif f.quota_exhausted:
                kind = "quota"
        if kind is not None:
            self.injected.count(kind)
        return kind

    # rate limits --------------------------------------------------------------
    def admit(self, tokens: int) -> BudgetDenial | None:
        """Take one request and `tokens` from the budgets, or say why not."""
        with self._lock:
            now = self._clock()
            self._requests.refill(now)
            self._tokens.refill(now)
            if self._requests.level < 1:
                self._denials += 1
                return BudgetDenial(
                    "requests",
                    self.rpm,
                    self.rpm - math.floor(self._requests.level),
                    1,
                    self._requests.wait_for(1),
                )
            if self._tokens.level < tokens:
                self._denials += 1
                wait = self._tokens.wait_for(tokens) if tokens <= self.tpm else 60.0
                return BudgetDenial(
                    "tokens", self.tpm, self.tpm - math.floor(self._tokens.level), tokens, wait
                )
            self._requests.level -= 1
            self._tokens.level -= tokens
            return None

    def rate_limit_headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            self._requests.refill(now)
            self._tokens.refill(now)
            return {
                "x-ratelimit-limit-requests": str(self.rpm),
                "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-requests": str(max(0, math.floor(self._requests.level))),
                "x-ratelimit-remaining-tokens": str(max(0, math.floor(self._tokens.level))),
                "x-ratelimit-reset-requests": go_duration(self._requests.reset_after()),
                "x-ratelimit-reset-tokens": go_duration(self._tokens.reset_after()),
            }

    # stats --------------------------------------------------------------------
    def record(self, status: int, inputs: int, tokens: int) -> None:
        with self._lock:
            self._stats_requests += 1
            self._stats_inputs += inputs
            self._stats_tokens += tokens
            key = str(status)
            self._status_counts[key] = self._status_counts.get(key, 0) + 1
            self._window.add(self._clock(), tokens)

    def stats(self) -> dict[str, object]:
        """`inputs` and `tokens` count only answered (200) requests: what would be billed.
        `max_*_per_window`: the most requests (any status) and billed tokens seen in any
        sliding 60 s window, to check a client's RPM/TPM discipline. `rate_limit_denials`:
        429s from this server's own rate limiter (not injected ones). `faults_injected`: the
        injected faults actually served, by kind. `distinct_texts_billed`,
        `inputs_billed_again`: billed inputs by text, as the provider would see a double
        payment."""
        with self._lock:
            return {
                "faults_injected": self.injected.snapshot(),
                **self.billed.snapshot(),
                "requests": self._stats_requests,
                "inputs": self._stats_inputs,
                "tokens": self._stats_tokens,
                "status_counts": dict(self._status_counts),
                "window_s": STATS_WINDOW_S,
                "max_requests_per_window": self._window.max_requests,
                "max_tokens_per_window": self._window.max_tokens,
                "rate_limit_denials": self._denials,
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._stats_requests = self._stats_inputs = self._stats_tokens = 0
            self._status_counts = {}
            self._window = _SlidingWindow(STATS_WINDOW_S)
            self._denials = 0
        self.injected.reset()
        self.billed.reset()


# --------------------------------------------------------------------------- helpers


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String() at millisecond precision: 12ms, 1.5s, 6m0s."""
    total_ms = round(seconds * 1000)
    if total_ms <= 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rem = divmod(total_ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs = f"{rem / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def deterministic_vector(model: str, text: str, dimensions: int) -> npt.NDArray[np.float32]:
    """The vector the fake returns for (model, text, dimensions): unit-norm float32."""
    digest = hashlib.sha256(f"{model}\x00{text}".encode("utf-8", "surrogatepass")).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    full = rng.standard_normal(max(dimensions, NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)))
    head = full[:dimensions]
    return (head / np.linalg.norm(head)).astype(np.float32)


class ApiError(Exception):
    """An error answered with the OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _invalid(message: str, param: str | None = "input", code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _retry_headers(seconds: float) -> dict[str, str]:
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(0, round(seconds * 1000))),
    }


@dataclass(frozen=True)
class EmbeddingRequest:
    inputs: list[str]
    model: str
    dimensions: int
    base64: bool
    total_tokens: int


def _parse_inputs(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _invalid("'input' must be a non-empty string or a non-empty array of strings.")
    if not all(isinstance(item, str) for item in value):
        raise _invalid(
            "This fake accepts only string inputs; token-array inputs are not supported."
        )
    if len(value) > MAX_INPUTS:
        raise _invalid(
            f"Too many inputs. The max number of inputs is {MAX_INPUTS}. "
            "We recommend splitting your inputs into multiple requests."
        )
    for i, item in enumerate(value):
        if item == "":
            raise _invalid(f"'$.input[{i}]' is invalid: the input may not be an empty string.")
    return [str(item) for item in value]


def _parse_dimensions(body: Mapping[str, object], model: str) -> int:
    native = NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    value = body.get("dimensions")
    if value is None:
        return native
    if model == "text-embedding-ada-002":
        raise _invalid("This model does not support specifying dimensions.", "dimensions")
    cap = native if model in NATIVE_DIMENSIONS else MAX_DIMENSIONS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= cap:
        raise _invalid(f"'dimensions' must be an integer between 1 and {cap}.", "dimensions")
    return value


def parse_embedding_request(raw: bytes) -> EmbeddingRequest:
    """Validate a request body the way the real endpoint does, counting tokens."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise _invalid("We could not parse the JSON body of your request.", None) from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter", "model")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    if "user" in body and not isinstance(body["user"], str):
        raise _invalid("'user' must be a string.", "user")
    inputs = _parse_inputs(body.get("input"))
    dimensions = _parse_dimensions(body, model)
    total = 0
    for i, text in enumerate(inputs):
        n = count_tokens(text)
        if n > MAX_INPUT_TOKENS:
            raise _invalid(
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however "
                f"you requested {n} tokens in input {i}. Please reduce your input.",
                code="context_length_exceeded",
            )
        total += n
    if total > MAX_REQUEST_TOKENS:
        raise _invalid(
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request.",
            code="max_tokens_per_request",
        )
    return EmbeddingRequest(inputs, model, dimensions, encoding == "base64", total)


def render_embeddings(req: EmbeddingRequest) -> bytes:
    """The 200 body for a validated request (CPU-bound: run it off the event loop)."""
    data: list[dict[str, object]] = []
    for index, text in enumerate(req.inputs):
        vec = deterministic_vector(req.model, text, req.dimensions)
        embedding: object = (
            base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
            if req.base64
            else vec.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    body = {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": req.total_tokens, "total_tokens": req.total_tokens},
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _check_auth(expected: str | None, header: str | None) -> None:
    if expected is None:
        return
    if not header:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8"), expected.encode("utf-8")
    ):
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


def _fault_error(kind: FaultKind, faults: FaultConfig) -> ApiError:
    if kind == "500":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
        )
    if kind == "quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type_="insufficient_quota",
            code="insufficient_quota",
        )
    wait = faults.retry_after_ms / 1000
    return ApiError(
        429,
        "Rate limit reached in organization org-fake on requests per min (RPM) (injected). "
        f"Please try again in {go_duration(wait)}.",
        type_="requests",
        code="rate_limit_exceeded",
        headers=_retry_headers(wait),
    )


def _budget_error(denial: BudgetDenial, model: str) -> ApiError:
    unit = "RPM" if denial.kind == "requests" else "TPM"
    return ApiError(
        429,
        f"Rate limit reached for {model} in organization org-fake on {denial.kind} per min "
        f"({unit}): Limit {denial.limit}, Used {denial.used}, Requested {denial.requested}. "
        f"Please try again in {go_duration(denial.retry_after_s)}.",
        type_=denial.kind,
        code="rate_limit_exceeded",
        headers=_retry_headers(denial.retry_after_s),
    )


async def _handle_embeddings(state: FakeOpenAIState, request: Request) -> tuple[Response, int, int]:
    _check_auth(state.config.api_key, request.headers.get("authorization"))
    faults = state.faults
    delay_s = jittered_s(faults.latency_ms, faults.latency_jitter_ms)
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    kind = state.take_fault()
    if kind == "hang":
        await asyncio.sleep(faults.hang_seconds)
    elif kind is not None:
        raise _fault_error(kind, faults)
    raw = await request.body()
    req = await asyncio.to_thread(parse_embedding_request, raw)
    poison = state.faults.poison_substring
    if poison is not None:
        for i, text in enumerate(req.inputs):
            if poison in text:
                state.injected.count("poison")
                raise _invalid(f"Input {i} was rejected by the provider.", code="invalid_input")
    denial = state.admit(req.total_tokens)
    if denial is not None:
        raise _budget_error(denial, req.model)
    body = await asyncio.to_thread(render_embeddings, req)
    state.billed.record(req.inputs)
    return Response(body, media_type="application/json"), len(req.inputs), req.total_tokens


# --------------------------------------------------------------------------- app


def create_app(config: FakeOpenAIConfig | None = None) -> FastAPI:
    """Build the fake; its state is `app.state.fake` (see `fake_state`)."""
    state = FakeOpenAIState(config or FakeOpenAIConfig())
    app = FastAPI(title="fake-openai", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = state

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        started = time.monotonic()
        inputs = tokens = 0
        try:
            response, inputs, tokens = await _handle_embeddings(state, request)
        except ApiError as err:
            response = err.response()
        except Exception as exc:  # never echo the exception text: it may quote an input
            logger.error("fake_openai internal error: %s", type(exc).__name__)
            response = ApiError(500, "internal error in fake", type_="server_error").response()
        response.headers.update(state.rate_limit_headers())
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
        response.headers["openai-version"] = "2020-10-01"
        state.record(response.status_code, inputs, tokens)
        logger.debug(
            "embeddings status=%d inputs=%d tokens=%d", response.status_code, inputs, tokens
        )
        return response

    @app.get("/control")
    async def get_control() -> dict[str, object]:
        return state.control_snapshot()

    @app.post("/control")
    async def post_control(request: Request) -> Response:
        try:
            return JSONResponse(state.apply_control(json.loads(await request.body())))
        except ValueError as exc:
            return _invalid(str(exc), None).response()

    @app.post("/control/reset")
    async def reset_control() -> dict[str, object]:
        return state.reset_control()

    @app.get("/stats")
    async def get_stats() -> dict[str, object]:
        return state.stats()

    @app.post("/stats/reset")
    async def reset_stats() -> dict[str, object]:
        state.reset_stats()
        return state.stats()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def fake_state(app: FastAPI) -> FakeOpenAIState:
    state = app.state.fake
    assert isinstance(state, FakeOpenAIState)
    return state


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m docingest.testing.fake_openai",
        description="Fake OpenAI embeddings server (deterministic vectors, fault injection).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_OPENAI_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (env FAKE_OPENAI_API_KEY); default: no auth",
    )
    p.add_argument("--rpm", type=int, default=FakeOpenAIConfig.rpm, help="requests per minute")
    p.add_argument("--tpm", type=int, default=FakeOpenAIConfig.tpm, help="tokens per minute")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument(
        "--latency-jitter-ms", type=float, default=0.0, help="plus uniform [0, this] per request"
    )
    p.add_argument("--fail-429-next", type=int, default=0)
    p.add_argument("--fail-500-next", type=int, default=0)
    p.add_argument("--quota-exhausted", action="store_true")
    p.add_argument("--poison-substring", default=None)
    p.add_argument("--hang-next", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=FaultConfig.hang_seconds)
    p.add_argument("--retry-after-ms", type=int, default=FaultConfig.retry_after_ms)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[str, int, FakeOpenAIConfig]:
    parser = _parser()
    args = parser.parse_args(argv)
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        fail_429_next=args.fail_429_next,
        fail_500_next=args.fail_500_next,
        quota_exhausted=args.quota_exhausted,
        poison_substring=args.poison_substring,
        hang_next=args.hang_next,
        hang_seconds=args.hang_seconds,
        retry_after_ms=args.retry_after_ms,
    )
    try:
        validate_control({**dataclasses.asdict(faults), "rpm": args.rpm, "tpm": args.tpm})
    except ValueError as exc:
        parser.error(str(exc))
    config = FakeOpenAIConfig(api_key=args.api_key, rpm=args.rpm, tpm=args.tpm, faults=faults)
    return str(args.host), int(args.port), config


def main(argv: Sequence[str] | None = None) -> None:
    host, port, config = config_from_args(argv)
    count_tokens("warm up")  # load the tokenizer now, not on the first request
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
