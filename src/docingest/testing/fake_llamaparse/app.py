"""The fake's HTTP app: the v1 parsing routes (both prefixes) and the test-only control,
stats and health routes."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from docingest.testing.fake_llamaparse.faults import validate_control
from docingest.testing.fake_llamaparse.formats import pages, plain
from docingest.testing.fake_llamaparse.jobs import run_job
from docingest.testing.fake_llamaparse.state import FakeJob, FakeState


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": "Job not found"}, status_code=404)


def _authorized(state: FakeState, request: Request) -> bool:
    if state.api_key is None:
        return True
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), state.api_key.encode()
    )


def _outage(state: FakeState, route: str) -> Response | None:
    """The `outage_until` fault: the whole service answers 503 (no retry-after hint)."""
    if time.time() >= state.faults.outage_until:
        return None
    state.count("outage_503_counts", route)
    state.injected.count("outage_503")
    return JSONResponse({"detail": "Service Unavailable"}, status_code=503)


def _form_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def _upload(state: FakeState, request: Request) -> Response:
    if not _authorized(state, request):
        return JSONResponse({"detail": "Invalid API key"}, status_code=401)
    if (down := _outage(state, "upload")) is not None:
        state.count("upload_status_counts", 503)
        return down
    if state.take("upload_429_next"):
        state.count("upload_status_counts", 429)
        wait = state.faults.retry_after_ms / 1000
        return JSONResponse(
            {"detail": "Rate limit exceeded"},
            status_code=429,
            headers={
                "retry-after": str(max(1, round(wait))),
                "retry-after-ms": str(state.faults.retry_after_ms),
            },
        )
    if state.take("upload_500_next"):
        state.count("upload_status_counts", 500)
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        state.count("upload_status_counts", 400)
        return JSONResponse({"detail": "file is required"}, status_code=400)
    data = await upload.read()
    await asyncio.sleep(state.faults.upload_delay_ms / 1000)
    job = FakeJob(
        id=str(uuid.uuid4()),
        webhook_url=_form_str(form.get("webhook_url")),
        job_id=_form_str(form.get("docingest_job_id")),
        document_id=_form_str(form.get("docingest_document_id")),
    )
    state.jobs[job.id] = job
    state.stats["uploads"] += 1
    state.count("upload_status_counts", 200)
    fail, lose = state.take("fail_jobs_next"), state.take("lose_jobs_next")
    state.spawn(run_job(state, job, data, fail, lose))
    return JSONResponse({"id": job.id, "status": "PENDING"})


def _state(request: Request) -> FakeState:
    state = request.app.state.fake
    assert isinstance(state, FakeState)
    return state


def _lookup(request: Request, job_id: str, route: str) -> FakeJob | Response:
    state = _state(request)
    if not _authorized(state, request):
        return JSONResponse({"detail": "Invalid API key"}, status_code=401)
    if (down := _outage(state, route)) is not None:
        return down
    job = state.jobs.get(job_id)
    if job is None or job.lost:
        return _not_found()
    return job


async def _upload_route(request: Request) -> Response:
    return await _upload(_state(request), request)


async def _status_route(request: Request, job_id: str) -> Response:
    _state(request).stats["status_polls"] += 1
    job = _lookup(request, job_id, "status")
    if isinstance(job, Response):
        return job
    return JSONResponse(
        {
            "id": job.id,
            "status": job.status,
            "error_code": job.error_code,
            "error_message": job.error_message,
        }
    )


async def _result_route(request: Request, job_id: str, kind: str) -> Response:
    _state(request).stats["result_fetches"] += 1
    job = _lookup(request, job_id, "result")
    if isinstance(job, Response):
        return job
    if job.status != "SUCCESS":
        return JSONResponse({"detail": f"Job is {job.status}"}, status_code=400)
    meta = {"job_pages": len(pages(job.markdown)), "job_is_cache_hit": False}
    if kind == "json":
        return JSONResponse({"pages": pages(job.markdown), "job_metadata": meta})
    values = {"markdown": job.markdown, "text": plain(job.markdown)}
    if kind not in values:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return JSONResponse({kind: values[kind], "job_metadata": meta})


async def _post_control(request: Request) -> Response:
    state = _state(request)
    try:
        update = validate_control(json.loads(await request.body()))
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=400)
    for key, value in update.items():
        setattr(state.faults, key, value)
    return JSONResponse(dataclasses.asdict(state.faults))


async def _get_control(request: Request) -> Response:
    return JSONResponse(dataclasses.asdict(_state(request).faults))


async def _get_stats(request: Request) -> Response:
    return JSONResponse(_state(request).snapshot())


async def _healthz() -> Response:
    return JSONResponse({"status": "ok"})


def create_app(state: FakeState) -> FastAPI:
    app = FastAPI(title="fake-llamaparse", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = state
    for prefix in ("/api/parsing", "/api/v1/parsing"):
        app.add_api_route(f"{prefix}/upload", _upload_route, methods=["POST"])
        app.add_api_route(f"{prefix}/job/{{job_id}}", _status_route, methods=["GET"])
        app.add_api_route(
            f"{prefix}/job/{{job_id}}/result/{{kind}}", _result_route, methods=["GET"]
        )
    app.add_api_route("/control", _get_control, methods=["GET"])
    app.add_api_route("/control", _post_control, methods=["POST"])
    app.add_api_route("/stats", _get_stats, methods=["GET"])
    app.add_api_route("/healthz", _healthz, methods=["GET"])
    return app
