"""A fake LlamaParse v1 server for tests, benchmarks and offline trials.

Run it as a process::

    python -m docingest.testing.fake_llamaparse --host 127.0.0.1 --port 8091 \\
        [--mode callback|relay|none] [--webhook-secret S] [--api-key KEY]

What it reproduces of the real contract (CONTRACTS.md §1):

* `POST /api/parsing/upload` (alias `/api/v1/parsing/upload`): multipart `file` + form
  fields -> `{"id", "status": "PENDING"}`; `GET /api/parsing/job/{id}` ->
  `{id, status, error_code, error_message}`; `GET .../result/{markdown|text|json}`;
  404 `{"detail": "Job not found"}` for unknown jobs; Bearer auth when `--api-key` is set.
* It really parses the PDF with docingest's own conversion (in long-lived parser processes,
  `fake_parse_pool.py`); an unparseable file ends ERROR with an `error_code` (the local
  parser's code, upper-cased).
* When the job ends it calls back, retrying non-2xx answers (409, 429, 5xx, connection
  errors) with backoff like a webhook sender:
  - `callback` mode: the native v1 body `{txt, md, json, images}` to the `webhook_url`;
  - `relay` mode: the signed seed callback of DESIGN.md §5 to `{origin of webhook_url}/
    webhooks/llamaparse`, for SUCCESS only, keyed per job from `--webhook-secret`; job and
    document ids come from the `docingest_job_id`/`docingest_document_id` form fields;
  - `none`: no callback (the client must poll).

Test-only routes: `GET|POST /control` (see `Faults`), `GET /stats` (with `faults_injected`:
each injected fault actually served, by kind; `job_seconds`: each finished job's time from
upload to result, as this service measured it), `GET /healthz`.
Uploaded documents carry PHI: nothing here logs their content, only counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from docingest.domain import seed_callback, webhook_auth
from docingest.testing.fake_ledgers import FaultCounter, jittered_s
from docingest.testing.fake_parse_pool import ParsePool

logger = logging.getLogger(__name__)

MODES = ("callback", "relay", "none")
FAIL_STATUSES = ("ERROR", "PARTIAL_SUCCESS", "CANCELED", "CANCELLED")
PARSER_NAME = "fake-llamaparse"
PARSER_VERSION = "1"
_PAGE_SPLIT = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_DELIVERY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_TLS = httpx.create_ssl_context()  # built once: each build costs ~25 ms of CPU


@dataclass
class Faults:
    """Set by flags, merged at runtime by `POST /control`. `*_next` count down per event."""

    mode: str = "callback"
    upload_429_next: int = 0  # 429 with Retry-After on the next uploads
    upload_500_next: int = 0  # 500 on the next uploads
    fail_jobs_next: int = 0  # the next uploaded jobs end in `fail_status`
    fail_status: str = "ERROR"
    fail_error_code: str = "NO_DATA_FOUND_IN_FILE"
    lose_jobs_next: int = 0  # the next uploaded jobs answer 404 once finished
    parse_delay_ms: float = 0.0  # a job stays PENDING at least this long
    parse_delay_jitter_ms: float = 0.0  # plus a uniform draw from [0, parse_delay_jitter_ms]
    drop_callbacks_next: int = 0  # never delivered
    duplicate_callbacks_next: int = 0  # delivered twice (same webhook-id in relay mode)
    callback_delay_ms: float = 0.0  # before each delivery
    hold_callbacks: int = 0  # hold this many, then deliver them newest first (reorder)
    retry_after_ms: int = 50
    outage_until: float = 0.0  # unix time: until then upload, status and result answer 503


_INT_KEYS = {
    "upload_429_next",
    "upload_500_next",
    "fail_jobs_next",
    "lose_jobs_next",
    "drop_callbacks_next",
    "duplicate_callbacks_next",
    "hold_callbacks",
    "retry_after_ms",
}
_FLOAT_KEYS = {"parse_delay_ms", "parse_delay_jitter_ms", "callback_delay_ms", "outage_until"}


def validate_control(update: object) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise ValueError("control body must be a JSON object")
    names = {f.name for f in dataclasses.fields(Faults)}
    unknown = sorted(str(k) for k in update if k not in names)
    if unknown:
        raise ValueError(f"unknown control keys: {', '.join(unknown)}")
    for key, value in update.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in _INT_KEYS and not (isinstance(value, int) and number and value >= 0):
            raise ValueError(f"{key} must be an integer >= 0")
        if key in _FLOAT_KEYS and not (number and value >= 0):
            raise ValueError(f"{key} must be a number >= 0")
        if key == "mode" and value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if key == "fail_status" and value not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {', '.join(FAIL_STATUSES)}")
        if key == "fail_error_code" and not (isinstance(value, str) and value):
            raise ValueError("fail_error_code must be a non-empty string")
    return dict(update)


@dataclass
class FakeJob:
    id: str
    webhook_url: str | None
    job_id: str | None  # docingest's ids, from the form (relay mode)
    document_id: str | None
    status: str = "PENDING"
    error_code: str | None = None
    error_message: str | None = None
    markdown: str = ""
    lost: bool = False
    received: float = field(default_factory=time.monotonic)
    seconds: float | None = None  # upload received -> job finished, as this service saw it


@dataclass
class _Delivery:
    url: str
    body: bytes
    webhook_id: str | None  # relay mode: signed with this id
    key: bytes | None


@dataclass
class FakeState:
    api_key: str | None
    webhook_secret: str | None
    faults: Faults
    # Like the real service's queue: at most this many documents parse at once, the rest
    # stay PENDING in arrival order (and the fake's CPU use stays bounded on small machines).
    parser: ParsePool = field(default_factory=lambda: ParsePool(2))
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    held: list[_Delivery] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    injected: FaultCounter = field(default_factory=FaultCounter)  # faults actually served
    stats: dict[str, Any] = field(
        default_factory=lambda: {
            "uploads": 0,
            "upload_status_counts": {},
            "status_polls": 0,
            "result_fetches": 0,
            "callbacks_attempted": 0,
            "callbacks_delivered": 0,
            "callbacks_dropped": 0,
            "callback_status_counts": {},
            "outage_503_counts": {},  # by route: upload, status, result
        }
    )

    def count(self, key: str, status: int | str) -> None:
        counts = self.stats[key]
        counts[str(status)] = counts.get(str(status), 0) + 1

    def take(self, name: str) -> bool:
        """Consume one unit of a `*_next` fault (counted in `faults_injected`)."""
        left = getattr(self.faults, name)
        if left > 0:
            setattr(self.faults, name, left - 1)
            self.injected.count(name.removesuffix("_next"))
            return True
        return False

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def snapshot(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job.status] = by_status.get(job.status, 0) + 1
        return {
            **json.loads(json.dumps(self.stats)),
            "jobs_by_status": by_status,
            "faults_injected": self.injected.snapshot(),
            "job_seconds": {
                job.id: round(job.seconds, 3)
                for job in self.jobs.values()
                if job.seconds is not None
            },
        }


# --------------------------------------------------------------------------- parsing


def _pages(markdown: str) -> list[dict[str, Any]]:
    parts = _PAGE_SPLIT.split(markdown)
    pages: list[dict[str, Any]] = []
    for number, text in zip(parts[1::2], parts[2::2], strict=True):
        md = text.strip("\n")
        pages.append({"page": int(number), "md": md, "text": _plain(md), "images": []})
    return pages or [{"page": 1, "md": markdown, "text": _plain(markdown), "images": []}]


def _plain(markdown: str) -> str:
    return re.sub(r"^#+ ", "", markdown, flags=re.MULTILINE)


async def _run_job(state: FakeState, job: FakeJob, data: bytes, fail: bool, lose: bool) -> None:
    await asyncio.sleep(jittered_s(state.faults.parse_delay_ms, state.faults.parse_delay_jitter_ms))
    if fail:
        job.status, job.error_code = state.faults.fail_status, state.faults.fail_error_code
        job.error_message = "injected failure"
    else:
        answer = await state.parser.parse(data)
        if answer["ok"]:
            job.status, job.markdown = "SUCCESS", answer["markdown"]
        else:
            job.status, job.error_code = "ERROR", str(answer["code"]).upper()
            job.error_message = "the document could not be parsed"
    job.seconds = time.monotonic() - job.received
    job.lost = lose
    delivery = _delivery_for(state, job)
    if delivery is not None:
        await _dispatch(state, delivery)


# --------------------------------------------------------------------------- callbacks


def _delivery_for(state: FakeState, job: FakeJob) -> _Delivery | None:
    if not job.webhook_url or state.faults.mode == "none":
        return None
    if state.faults.mode == "callback":
        native = {
            "txt": _plain(job.markdown),
            "md": job.markdown,
            "json": _pages(job.markdown) if job.markdown else [],
            "images": [],
        }
        return _Delivery(job.webhook_url, json.dumps(native).encode(), None, None)
    if job.status != "SUCCESS" or not (job.job_id and job.document_id and state.webhook_secret):
        return None
    origin = httpx.URL(job.webhook_url).copy_with(path="/webhooks/llamaparse", query=None)
    job_uuid = uuid.UUID(job.job_id)
    body = seed_callback.build(
        job_uuid, uuid.UUID(job.document_id), job.markdown, PARSER_NAME, PARSER_VERSION
    )
    key = webhook_auth.job_signing_key(state.webhook_secret, job_uuid)
    return _Delivery(str(origin), body, f"msg_{uuid.uuid4().hex}", key)


async def _dispatch(state: FakeState, delivery: _Delivery) -> None:
    if state.take("drop_callbacks_next"):
        state.stats["callbacks_dropped"] += 1
        return
    copies = 2 if state.take("duplicate_callbacks_next") else 1
    batch = [delivery] * copies
    if state.faults.hold_callbacks > 0:
        state.held.extend(batch)
        if len(state.held) < state.faults.hold_callbacks:
            return
        batch, state.held = list(reversed(state.held)), []
        state.faults.hold_callbacks = 0
        state.injected.count("reordered_callbacks", len(batch))
    for item in batch:
        await _send(state, item)


async def _send(state: FakeState, delivery: _Delivery) -> None:
    async with httpx.AsyncClient(timeout=15, verify=_TLS) as client:
        for attempt in range(len(_DELIVERY_DELAYS_S) + 1):
            await asyncio.sleep(state.faults.callback_delay_ms / 1000)
            headers = {"content-type": "application/json"}
            if delivery.key is not None and delivery.webhook_id is not None:
                ts = int(time.time())
                headers["webhook-id"] = delivery.webhook_id
                headers["webhook-timestamp"] = str(ts)
                headers["webhook-signature"] = webhook_auth.sign(
                    delivery.key, delivery.webhook_id, ts, delivery.body
                )
            state.stats["callbacks_attempted"] += 1
            try:
                response = await client.post(delivery.url, content=delivery.body, headers=headers)
            except httpx.TransportError as exc:
                state.count("callback_status_counts", type(exc).__name__)
                status, wait = 0, None
            else:
                status = response.status_code
                state.count("callback_status_counts", status)
                wait = _retry_after(response)
            if 200 <= status < 300:
                state.stats["callbacks_delivered"] += 1
                return
            if status and status not in _RETRY_STATUSES:
                return
            if attempt < len(_DELIVERY_DELAYS_S):
                await asyncio.sleep(wait if wait is not None else _DELIVERY_DELAYS_S[attempt])


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return min(float(raw), 5.0) if raw.isdigit() else None


# --------------------------------------------------------------------------- app


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
    state.spawn(_run_job(state, job, data, fail, lose))
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
    meta = {"job_pages": len(_pages(job.markdown)), "job_is_cache_hit": False}
    if kind == "json":
        return JSONResponse({"pages": _pages(job.markdown), "job_metadata": meta})
    values = {"markdown": job.markdown, "text": _plain(job.markdown)}
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m docingest.testing.fake_llamaparse",
        description="Fake LlamaParse v1 server (real local parsing, callbacks, fault injection).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--mode", choices=MODES, default="callback")
    p.add_argument(
        "--webhook-secret",
        default=os.environ.get("DOCINGEST_WEBHOOK_SECRET") or None,
        help="derives the per-job signing keys in relay mode (env DOCINGEST_WEBHOOK_SECRET)",
    )
    p.add_argument(
        "--parse-concurrency",
        type=int,
        default=2,
        help="documents parsed at once; the rest wait PENDING in arrival order",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_LLAMAPARSE_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (env FAKE_LLAMAPARSE_API_KEY)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    state = FakeState(
        args.api_key,
        args.webhook_secret,
        Faults(mode=args.mode),
        parser=ParsePool(max(1, args.parse_concurrency)),
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                create_app(state),
                host=args.host,
                port=args.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=2,
            )
    finally:
        state.parser.close()


if __name__ == "__main__":
    main()
