"""Parse callbacks (DESIGN.md §5). No bearer token; each route authenticates its own way and
fails closed. Every decision is an `events` row; every refusal also increments
`docingest_webhook_rejections_total{reason}`. Bodies are never logged.

* `POST /webhooks/llamaparse` — signed (Standard Webhooks, per-job key). On success the
  markdown artifact is stored and the job moves parse_queued -> parsed once: the
  `webhook_log` insert, the fenced status change and the events commit together.
* `POST /webhooks/llamaparse/{job_id}?token=...` — LlamaParse's own callback, a hint only:
  with the job's token it makes the waiting job claimable now, and a worker fetches status
  and result from LlamaParse with our key. Its body is never parsed: a genuine sender's is
  read and dropped (capped and with deadlines at the edge), a refused one is not read at all.

A job a worker holds (it may be polling the parser for the same job) is not touched: 409
with `Retry-After`, and the sender's retry or the reconciler finishes it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs
from uuid import UUID

import psycopg
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.types import Scope

from docingest.api import audit
from docingest.api.admission import header
from docingest.api.deps import StateDep
from docingest.api.errors import error_response
from docingest.api.schemas import WebhookAck, errors
from docingest.api.state import AppState
from docingest.domain import seed_callback, webhook_auth
from docingest.domain.errors import ParseError
from docingest.domain.seed_callback import CallbackRejected
from docingest.domain.states import JobStatus
from docingest.pipeline.parsed_markdown import ParsedArtifact, prepare
from docingest.store import events, jobs, webhook_log
from docingest.store.db import DictConn
from docingest.store.records import Job

log = logging.getLogger(__name__)
T = TypeVar("T")
router = APIRouter(tags=["webhooks"])

REJECTIONS = Counter("docingest_webhook_rejections_total", "Parse callbacks refused", ["reason"])
SIGNED_ACTOR = "webhook:llamaparse"
HINT_ACTOR = "webhook:llamaparse-hint"
ACCEPTED = "webhook.accepted"  # the event of every callback answered 2xx
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


# bodies above this are hashed and parsed in a worker thread, not on the event loop
_OFF_LOOP_BYTES = 256 * 1024


class _Refused(Exception):
    """`verified`: the sender proved itself (signature or token); otherwise the refusal is an
    anonymous one, counted in the per-minute aggregate instead of one events row each."""

    def __init__(
        self,
        status: int,
        reason: str,
        job_id: UUID | None = None,
        *,
        busy: bool = False,
        verified: bool = False,
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.job_id = status, reason, job_id
        self.busy, self.verified = busy, verified


@router.post(
    "/webhooks/llamaparse",
    response_model=WebhookAck,
    responses=errors(400, 401, 404, 408, 409, 413, 422, 429, 503),
)
async def signed_callback(request: Request, state: StateDep) -> JSONResponse:
    try:
        return await _signed(request, state)
    except _Refused as refusal:
        return await _refuse(state, SIGNED_ACTOR, refusal, audit.client_address(request))


HINT_PREFIX = "/webhooks/llamaparse/"


def callback_job(scope: Scope, secret: str) -> UUID | None:
    """The job a hint callback's token is for when it verifies (the API's admission then
    serves it in the signed lane, keyed by that job), else None. No database read."""
    path = str(scope.get("path", ""))
    if scope.get("method") != "POST" or not path.startswith(HINT_PREFIX):
        return None
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    tokens = query.get("token")
    # as the route reads it: the query's (last) token, or the header when that is empty
    token = (tokens[-1] if tokens else None) or header(scope, b"x-docingest-callback-token")
    return webhook_auth.token_job(secret, path[len(HINT_PREFIX) :], token)


@router.post(
    HINT_PREFIX + "{job_id}",
    response_model=WebhookAck,
    responses={202: {"model": WebhookAck}, **errors(401, 404, 429, 503)},
)
async def hint_callback(
    job_id: str,
    request: Request,
    state: StateDep,
    token: str | None = None,
    x_docingest_callback_token: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    try:
        response = await _hint(job_id, token or x_docingest_callback_token, state)
    except _Refused as refusal:  # answered unread: the connection closes after the answer
        return await _refuse(state, HINT_ACTOR, refusal, audit.client_address(request))
    async for _ in request.stream():  # a genuine sender's body (the result): read, dropped
        pass
    return response


async def _signed(request: Request, state: AppState) -> JSONResponse:
    """Headers first (before any body byte), then the raw body's signature, and only then
    parsing: a forged body is never parsed, a large one is hashed off the event loop."""
    try:
        webhook_auth.check_headers(request.headers, now=time.time())
    except webhook_auth.SignatureRejected as exc:
        raise _Refused(401, exc.reason) from None
    raw = await request.body()  # capped, with deadlines, at the edge (api/edge.py)
    try:
        job_id = seed_callback.claimed_job_id(raw)
    except CallbackRejected as exc:
        raise _Refused(exc.status, exc.reason) from None
    key = webhook_auth.job_signing_key(state.webhook_secret, job_id)
    try:
        webhook_id = await _maybe_off_loop(
            len(raw), webhook_auth.verify, key, request.headers, raw, now=time.time()
        )
    except webhook_auth.SignatureRejected as exc:
        raise _Refused(401, exc.reason, job_id) from None
    try:
        body = await _maybe_off_loop(len(raw), seed_callback.load, raw, job_id)
        cb = seed_callback.parse(body, job_id)
    except CallbackRejected as exc:
        raise _Refused(exc.status, exc.reason, job_id, verified=True) from None
    del raw, body
    async with state.pool.connection() as conn:
        if await webhook_log.seen(conn, webhook_id):
            return await _acknowledge(conn, job_id, None, "duplicate")
        job = await jobs.get(conn, job_id)
        if job is None or job.document_id != cb.document_id:
            reason = "unknown_job" if job is None else "document_mismatch"
            raise _Refused(404, reason, job_id, verified=True)
        try:
            artifact = await asyncio.to_thread(
                prepare, job.document_id, job.job_id, cb.markdown, state.max_document_chars
            )
        except ParseError as exc:
            raise _Refused(422, exc.code, job_id, verified=True) from None
        if job.status != JobStatus.PARSE_QUEUED:
            if job.parsed_sha256 != artifact.sha256:
                raise _Refused(409, "not_waiting", job_id, verified=True)
            async with conn.transaction():
                await webhook_log.record(conn, webhook_id, job_id)
                return await _acknowledge(conn, job_id, job, "already_applied")
        await state.blobs.put_bytes(artifact.key, artifact.markdown.encode("utf-8"))
        try:
            response = await _complete(conn, webhook_id, job, cb, artifact)
        except _Refused:
            await _drop_if_job_gone(conn, state, job.job_id, artifact.key)
            raise
        await webhook_log.purge_expired(conn)
    return response


async def _maybe_off_loop(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if size <= _OFF_LOOP_BYTES:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


async def _drop_if_job_gone(conn: DictConn, state: AppState, job_id: UUID, key: str) -> None:
    """The document was deleted while its callback was being stored: the artifact (its key is
    this job's own) must not outlive it. A job that still exists keeps it (a retry or the
    reconciler may record the same key)."""
    if await jobs.get(conn, job_id) is None:
        await state.blobs.delete(key)


async def _complete(
    conn: DictConn,
    webhook_id: str,
    job: Job,
    cb: seed_callback.SeedCallback,
    artifact: ParsedArtifact,
) -> JSONResponse:
    async with conn.transaction():
        if not await webhook_log.record(conn, webhook_id, job.job_id):
            return await _acknowledge(conn, job.job_id, job, "duplicate")  # a concurrent twin
        moved = await jobs.record_parsed(
            conn,
            job,
            artifact,
            parser_name=cb.parser_name,
            parser_version=cb.parser_version,
            event=jobs.StatusEvent(actor=SIGNED_ACTOR, detail={"via": "signed_callback"}),
        )
        if moved is None:  # rolls back the webhook_log row: a retry may still act
            raise _Refused(409, "job_busy", job.job_id, busy=True, verified=True)
        response = await _acknowledge(conn, job.job_id, moved, "accepted")
    await jobs.notify(conn)  # committed: a worker may claim it now
    return response


async def _hint(raw_job_id: str, token: str | None, state: AppState) -> JSONResponse:
    try:
        job_id: UUID | None = UUID(raw_job_id)
    except ValueError:
        job_id = None
    async with state.pool.connection() as conn:
        job = await jobs.get(conn, job_id) if job_id is not None else None
        stored = job.callback_token_sha256 if job is not None else None
        if job is not None and stored is None and _submitting(job, token, state.webhook_secret):
            # A fast parser called back before the worker committed the submission (and the
            # token's hash with it): the right token, too early. The sender retries.
            raise _Refused(409, "job_busy", job.job_id, busy=True, verified=True)
        if not webhook_auth.token_matches(token, stored):
            reason = "missing_token" if not token else "bad_token" if job else "unknown_job"
            raise _Refused(401, reason, job_id)
        assert job is not None
        if job.status != JobStatus.PARSE_QUEUED:
            return await _acknowledge(conn, job.job_id, job, "not_waiting", actor=HINT_ACTOR)
        woken = jobs.StatusEvent(actor=HINT_ACTOR, action=ACCEPTED, outcome="woken")
        if not await jobs.wake_parse(conn, job.job_id, woken):
            raise _Refused(409, "job_busy", job.job_id, busy=True, verified=True)
        return JSONResponse({"status": "woken"}, status_code=202)


def _submitting(job: Job, token: str | None, secret: str) -> bool:
    """The job is being submitted to the parser and `token` is the one its URL carries
    (derived from the webhook secret, compared in constant time)."""
    if job.status != JobStatus.UPLOADED or not token:
        return False
    expected = webhook_auth.callback_token(secret, job.job_id)
    return hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))


async def _acknowledge(
    conn: DictConn,
    job_id: UUID,
    job: Job | None,
    outcome: str,
    *,
    actor: str = SIGNED_ACTOR,
    status: int = 200,
) -> JSONResponse:
    await events.record(
        conn,
        actor=actor,
        action=ACCEPTED,
        outcome=outcome,
        job_id=job_id,
        document_id=job.document_id if job else None,
        correlation_id=job.correlation_id if job else None,
    )
    return JSONResponse({"status": outcome}, status_code=status)


async def _refuse(state: AppState, actor: str, refusal: _Refused, address: str) -> JSONResponse:
    REJECTIONS.labels(reason=refusal.reason).inc()
    if not refusal.verified:
        state.refusals.note(address, refusal.status, refusal.reason)
    else:
        await _record_rejection(state, actor, refusal)
    log.info(
        "webhook rejected",
        extra={"action": "webhook_rejected", "reason": refusal.reason, "status": refusal.status},
    )
    # The hint route answers the same to a wrong token and an unknown job (no oracle).
    code = "unauthorized" if actor == HINT_ACTOR and refusal.status == 401 else refusal.reason
    headers = {"Retry-After": "1"} if refusal.busy else None
    return error_response(refusal.status, code, "callback refused", headers)


async def _record_rejection(state: AppState, actor: str, refusal: _Refused) -> None:
    detail: dict[str, Any] = {"status": refusal.status}
    try:
        async with state.pool.connection() as conn:
            await events.record(
                conn,
                actor=actor,
                action="webhook.rejected",
                outcome=refusal.reason,
                job_id=refusal.job_id,
                detail=detail,
            )
    except psycopg.Error:
        log.warning("could not record a webhook rejection", extra={"action": "event_error"})
