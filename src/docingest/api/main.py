"""Assemble the FastAPI app: routers, error handlers, edge middleware, and the lifespan-held
pool, clients and refusal log.

Middleware, outermost first: HSTS (every answer carries it) -> request metrics (shed answers
are counted and timed too) -> admission lanes (api/admission.py) -> body caps and deadlines
(api/edge.py) -> the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import Scope

from docingest.api import audit, edge, errors, hsts, shedding
from docingest.api.admission import Admission, Lanes, header
from docingest.api.auth import TokenPolicy
from docingest.api.errors import ApiError
from docingest.api.observe import RequestMetrics
from docingest.api.refusals import RefusalLog
from docingest.api.routes import dashboard, documents, health, jobs, search, webhooks
from docingest.api.state import AppState
from docingest.bootstrap import Runtime
from docingest.domain.errors import DocingestError
from docingest.store import at_rest
from docingest.store.db import open_pool
from docingest.store.vacuum import VacuumAfterDeletes
from docingest.store.vector_search import Strategy


def create_app(rt: Runtime, *, pool_size: int = 10, pool_timeout_s: float = 5.0) -> FastAPI:
    """`pool_timeout_s`: how long a request waits for a database connection before it is
    shed with 503 `database_busy` (api/shedding.py)."""
    settings = rt.settings
    refusals = RefusalLog()
    lanes = Lanes(max_inflight=settings.api_max_inflight, limits=settings.edge)
    vacuum = VacuumAfterDeletes(rt.dsn)
    tokens = TokenPolicy(
        rt.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_ttl_s=settings.jwt_max_ttl_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(
            rt.dsn,
            # two kept open: a lone hybrid search finds an idle second connection for its
            # text ranking (store/db.spare_connection), even on an otherwise quiet API
            min_size=min(2, pool_size),
            max_size=pool_size,
            name="docingest-api",
            timeout=pool_timeout_s,
            statement_timeout_s=settings.edge.statement_timeout_s,
        )
        at_rest.report(rt.at_rest)
        app.state.docingest = AppState(
            pool=pool,
            blobs=rt.blobs,
            embedder=rt.embedder,
            tokens=tokens,
            max_upload_bytes=settings.max_upload_bytes,
            webhook_secret=rt.webhook_secret,
            refusals=refusals,
            max_document_chars=settings.work.max_document_chars,
            max_user_retries=settings.work.max_user_retries,
            vacuum=vacuum,
            lanes=lanes,
            vector_search=Strategy(settings.vector_search),
        )
        background = [
            asyncio.create_task(refusals.run(pool), name="docingest-refusals"),
            asyncio.create_task(vacuum.run(), name="docingest-vacuum"),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await rt.embedder.aclose()
            await pool.close()

    def identify(scope: Scope) -> str | None:
        try:
            return f"user:{tokens.principal(header(scope, b'authorization')).user_id}"
        except ApiError:
            pass
        job_id = webhooks.callback_job(scope, rt.webhook_secret)
        return f"callback:{job_id}" if job_id is not None else None

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
    app.add_exception_handler(HTTPException, audit.handle_http_exception)
    app.add_exception_handler(psycopg.OperationalError, shedding.handle_database_busy)
    # added first, so innermost: admission runs before any body byte is read
    app.add_middleware(
        edge.BodyLimits,
        upload_cap=settings.max_upload_bytes,
        webhook_cap=edge.webhook_body_cap(settings.work.max_document_chars),
        body_timeout_s=settings.edge.body_timeout_s,
        min_rate=settings.edge.body_min_rate,
    )
    app.add_middleware(Admission, lanes=lanes, identify=identify, refusals=refusals)
    app.add_middleware(RequestMetrics)
    behind_tls_proxy = settings.public_url.startswith("https://")
    app.add_middleware(hsts.StrictTransportSecurity, always=behind_tls_proxy)
    # added last, so outermost: every answer, refusals of the lanes included
    app.add_middleware(edge.CloseAfterUnreadBody)
    return app
