"""The fake's HTTP app: `/v1/embeddings` and the test-only control, stats and health routes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from docingest.testing.fake_ledgers import jittered_s
from docingest.testing.fake_openai.config import FakeOpenAIConfig
from docingest.testing.fake_openai.state import FakeOpenAIState
from docingest.testing.fake_openai.wire import (
    ApiError,
    EmbeddingRequest,
    budget_error,
    check_auth,
    fault_error,
    invalid,
    parse_embedding_request,
    render_embeddings,
)

logger = logging.getLogger(__name__)


def _prepare(raw: bytes) -> tuple[EmbeddingRequest, bytes]:
    """The validated request and its 200 body (CPU-bound: run it off the event loop)."""
    req = parse_embedding_request(raw)
    return req, render_embeddings(req)


async def _delay(seconds: float) -> None:
    """The configured latency (and a hang): one place, which a test replaces to observe it."""
    await asyncio.sleep(seconds)


def _retrieved(work: asyncio.Future[Any]) -> None:
    if not work.cancelled():
        work.exception()  # a failure nobody awaits (the request ended first) is not logged


async def _handle_embeddings(state: FakeOpenAIState, request: Request) -> tuple[Response, int, int]:
    """The configured latency is the request's whole time, as a real provider's includes its
    own work: the body is parsed, its tokens counted and the answer rendered while the delay
    runs, not after it (after it, every request took its latency plus the fake's own CPU
    time, tens of milliseconds for 256 inputs). Faults, the poison check and the budget still
    act after the delay, on the parsed request."""
    check_auth(state.config.api_key, request.headers.get("authorization"))
    faults = state.faults
    delay_s = jittered_s(faults.latency_ms, faults.latency_jitter_ms)
    work = asyncio.ensure_future(asyncio.to_thread(_prepare, await request.body()))
    work.add_done_callback(_retrieved)
    if delay_s > 0:
        await _delay(delay_s)
    kind = state.take_fault()
    if kind == "hang":
        await _delay(faults.hang_seconds)
    elif kind is not None:
        raise fault_error(kind, faults)
    req, body = await work
    poison = state.faults.poison_substring
    if poison is not None:
        for i, text in enumerate(req.inputs):
            if poison in text:
                state.injected.count("poison")
                raise invalid(f"Input {i} was rejected by the provider.", code="invalid_input")
    denial = state.admit(req.total_tokens)
    if denial is not None:
        raise budget_error(denial, req.model)
    state.billed.record(req.inputs)
    return Response(body, media_type="application/json"), len(req.inputs), req.total_tokens


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
            return invalid(str(exc), None).response()

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
