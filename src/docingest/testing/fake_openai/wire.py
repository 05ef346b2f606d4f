"""The OpenAI `/v1/embeddings` wire format (CONTRACTS.md section 2): request validation with
real token counts, the 200 body (float lists or base64 little-endian float32), and the
error bodies and headers of 400, 401, 429 and 500 answers."""

from __future__ import annotations

import base64
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi.responses import JSONResponse, Response

from docingest.pipeline.tokens import count_tokens
from docingest.testing.fake_openai.config import FaultConfig, FaultKind
from docingest.testing.fake_openai.limits import BudgetDenial, go_duration
from docingest.testing.fake_openai.vectors import deterministic_vectors

MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
DEFAULT_DIMENSIONS = 1536
MAX_DIMENSIONS = 16_000  # pgvector's `vector` column limit; unknown models may ask for up to this
NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


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


def invalid(message: str, param: str | None = "input", code: str | None = None) -> ApiError:
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
        raise invalid("'input' must be a non-empty string or a non-empty array of strings.")
    if not all(isinstance(item, str) for item in value):
        raise invalid("This fake accepts only string inputs; token-array inputs are not supported.")
    if len(value) > MAX_INPUTS:
        raise invalid(
            f"Too many inputs. The max number of inputs is {MAX_INPUTS}. "
            "We recommend splitting your inputs into multiple requests."
        )
    for i, item in enumerate(value):
        if item == "":
            raise invalid(f"'$.input[{i}]' is invalid: the input may not be an empty string.")
    return [str(item) for item in value]


def _parse_dimensions(body: Mapping[str, object], model: str) -> int:
    native = NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    value = body.get("dimensions")
    if value is None:
        return native
    if model == "text-embedding-ada-002":
        raise invalid("This model does not support specifying dimensions.", "dimensions")
    cap = native if model in NATIVE_DIMENSIONS else MAX_DIMENSIONS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= cap:
        raise invalid(f"'dimensions' must be an integer between 1 and {cap}.", "dimensions")
    return value


def parse_embedding_request(raw: bytes) -> EmbeddingRequest:
    """Validate a request body the way the real endpoint does, counting tokens."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("We could not parse the JSON body of your request.", None) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter", "model")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    if "user" in body and not isinstance(body["user"], str):
        raise invalid("'user' must be a string.", "user")
    inputs = _parse_inputs(body.get("input"))
    dimensions = _parse_dimensions(body, model)
    total = 0
    for i, text in enumerate(inputs):
        n = count_tokens(text)
        if n > MAX_INPUT_TOKENS:
            raise invalid(
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however "
                f"you requested {n} tokens in input {i}. Please reduce your input.",
                code="context_length_exceeded",
            )
        total += n
    if total > MAX_REQUEST_TOKENS:
        raise invalid(
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request.",
            code="max_tokens_per_request",
        )
    return EmbeddingRequest(inputs, model, dimensions, encoding == "base64", total)


def render_embeddings(req: EmbeddingRequest) -> bytes:
    """The 200 body for a validated request (CPU-bound: run it off the event loop).

    Assembled from pre-serialised parts: base64 text needs no JSON escaping, so the
    megabytes of vectors are never scanned by `json.dumps` (a third of the fake's CPU per
    request otherwise)."""
    matrix = deterministic_vectors(req.model, req.inputs, req.dimensions).astype("<f4")
    embeddings = (
        [b'"%s"' % base64.b64encode(row.tobytes()) for row in matrix]
        if req.base64
        else [json.dumps(row).encode("ascii") for row in matrix.tolist()]
    )
    data = b",".join(
        b'{"object":"embedding","index":%d,"embedding":%s}' % (index, embedding)
        for index, embedding in enumerate(embeddings)
    )
    usage = {"prompt_tokens": req.total_tokens, "total_tokens": req.total_tokens}
    rest = json.dumps({"model": req.model, "usage": usage}, separators=(",", ":"))
    return b'{"object":"list","data":[%s],%s' % (data, rest[1:].encode("utf-8"))


def check_auth(expected: str | None, header: str | None) -> None:
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


def fault_error(kind: FaultKind, faults: FaultConfig) -> ApiError:
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


def budget_error(denial: BudgetDenial, model: str) -> ApiError:
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
