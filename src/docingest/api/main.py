"""Assemble the FastAPI app: routers, error handlers, lifespan-held pool and clients."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter, Histogram

from docingest.api import audit, errors, hsts, shedding
from docingest.api.routes import dashboard, documents, health, jobs, search, webhooks
from docingest.api.state import AppState
from docingest.bootstrap import Runtime
from docingest.domain.errors import DocingestError
from docingest.store.db import open_pool
from docingest.store.vector_search import Strategy

REQUESTS = Counter("docingest_api_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "docingest_api_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def create_app(rt: Runtime, *, pool_size: int = 10, pool_timeout_s: float = 5.0) -> FastAPI:
    """`pool_timeout_s`: how long a request waits for a database connection before it is
    shed with 503 `database_busy` (api/shedding.py)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(
            rt.dsn, min_size=1, max_size=pool_size, name="docingest-api", timeout=pool_timeout_s
        )
        app.state.docingest = AppState(
            pool=pool,
            blobs=rt.blobs,
            embedder=rt.embedder,
            jwt_secret=rt.jwt_secret,
            max_upload_bytes=rt.settings.max_upload_bytes,
            webhook_secret=rt.webhook_secret,
            jwt_issuer=rt.settings.jwt_issuer,
            jwt_audience=rt.settings.jwt_audience,
            vector_search=Strategy(rt.settings.vector_search),
        )
        try:
            yield
        finally:
            await rt.embedder.aclose()
            await pool.close()

    app = FastAPI(title="docingest", version="0.1.0", lifespan=lifespan)
    for router in (
        documents.router,
        jobs.router,
        search.router,
        health.router,
        webhooks.router,
        dashboard.router,
    ):
        app.include_router(router)
    app.add_exception_handler(errors.ApiError, audit.handle_audited_api_error)
    app.add_exception_handler(DocingestError, errors.handle_domain_error)
    app.add_exception_handler(RequestValidationError, errors.handle_validation_error)
    app.add_exception_handler(psycopg.OperationalError, shedding.handle_database_busy)
    # added before `observe`, so it runs inside it: shed requests are counted and timed too
    app.add_middleware(shedding.InflightLimiter, max_inflight=rt.settings.api_max_inflight)
    # wraps the limiter, so shed 503s carry the header too
    behind_tls_proxy = rt.settings.public_url.startswith("https://")
    app.add_middleware(hsts.StrictTransportSecurity, always=behind_tls_proxy)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")  # templates, never raw paths with ids
        LATENCY.labels(template, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(template, request.method, str(response.status_code)).inc()
        return response

    return app
