"""Parse callbacks (DESIGN.md §5). No bearer token; each route authenticates its own way and
fails closed. Every decision is an `events` row; every refusal also increments
`docingest_webhook_rejections_total{reason}`. Bodies are never logged.

* `POST /webhooks/llamaparse` — signed (Standard Webhooks, per-job key). On success the
  markdown artifact is stored and the job moves parse_queued -> parsed once: the
  `webhook_log` insert, the fenced status change and the events commit together.
* `POST /webhooks/llamaparse/{job_id}?token=...` — LlamaParse's own callback, a hint only:
  with the job's token it makes the waiting job claimable now, and a worker fetches status
  and result from LlamaParse with our key. Its body is never read.

A job a worker holds (it may be polling the parser for the same job) is not touched: 409
with `Retry-After`, and the sender's retry or the reconciler finishes it.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from docingest.api.deps import StateDep
from docingest.api.errors import error_response
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
router = APIRouter(tags=["webhooks"])

REJECTIONS = Counter("docingest_webhook_rejections_total", "Parse callbacks refused", ["reason"])
SIGNED_ACTOR = "webhook:llamaparse"
HINT_ACTOR = "webhook:llamaparse-hint"
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class _Refused(Exception):
    def __init__(
        self, status: int, reason: str, job_id: UUID | None = None, *, busy: bool = False
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.job_id, self.busy = status, reason, job_id, busy


def body_cap(max_upload_bytes: int) -> int:
    """Markdown can outgrow its (compressed) PDF; bounded all the same."""
    return min(32 << 20, max(1 << 20, 4 * max_upload_bytes))


@router.post("/webhooks/llamaparse")
async def signed_callback(request: Request, state: StateDep) -> JSONResponse:
    try:
        return await _signed(request, state)
    except _Refused as refusal:
        return await _refuse(state, SIGNED_ACTOR, refusal)


@router.post("/webhooks/llamaparse/{job_id}")
async def hint_callback(
    job_id: str,
    state: StateDep,
    token: str | None = None,
    x_docingest_callback_token: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    try:
        return await _hint(job_id, token or x_docingest_callback_token, state)
    except _Refused as refusal:
        return await _refuse(state, HINT_ACTOR, refusal)


async def _signed(request: Request, state: AppState) -> JSONResponse:
    if not all(request.headers.get(h) for h in _SIGNATURE_HEADERS):
        raise _Refused(401, "missing_signature")
    raw = await _read_capped(request, body_cap(state.max_upload_bytes))
    try:
        body, job_id = seed_callback.load(raw)
    except CallbackRejected as exc:
        raise _Refused(exc.status, exc.reason) from None
    key = webhook_auth.job_signing_key(state.webhook_secret, job_id)
    try:
        webhook_id = webhook_auth.verify(key, request.headers, raw, now=time.time())
    except webhook_auth.SignatureRejected as exc:
        raise _Refused(401, exc.reason, job_id) from None
    async with state.pool.connection() as conn:
        if await webhook_log.seen(conn, webhook_id):
            return await _acknowledge(conn, job_id, None, "duplicate")
        try:
            cb = seed_callback.parse(body, job_id)
        except CallbackRejected as exc:
            raise _Refused(exc.status, exc.reason, job_id) from None
        job = await jobs.get(conn, job_id)
        if job is None or job.document_id != cb.document_id:
            raise _Refused(404, "unknown_job" if job is None else "document_mismatch", job_id)
        try:
            artifact = prepare(job.document_id, cb.markdown)
        except ParseError:
            raise _Refused(422, "no_text", job_id) from None
        if job.status != JobStatus.PARSE_QUEUED:
            if job.parsed_sha256 != artifact.sha256:
                raise _Refused(409, "not_waiting", job_id)
            async with conn.transaction():
                await webhook_log.record(conn, webhook_id, job_id)
                return await _acknowledge(conn, job_id, job, "already_applied")
        await state.blobs.put_bytes(artifact.key, artifact.markdown.encode("utf-8"))
        response = await _complete(conn, webhook_id, job, cb, artifact)
        await webhook_log.purge_expired(conn)
    return response


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
        moved = await jobs.complete_parse(
            conn,
            job.job_id,
            job.document_id,
            {
                "parsed_path": artifact.key,
                "parsed_sha256": artifact.sha256,
                "parser_name": cb.parser_name,
                "parser_version": cb.parser_version,
            },
        )
        if moved is None:  # rolls back the webhook_log row: a retry may still act
            raise _Refused(409, "job_busy", job.job_id, busy=True)
        response = await _acknowledge(conn, job.job_id, moved, "accepted")
        await events.record(
            conn,
            actor=SIGNED_ACTOR,
            action="job.parsed",
            job_id=moved.job_id,
            document_id=moved.document_id,
            correlation_id=moved.correlation_id,
            detail={"via": "signed_callback"},
        )
    return response


async def _hint(raw_job_id: str, token: str | None, state: AppState) -> JSONResponse:
    try:
        job_id: UUID | None = UUID(raw_job_id)
    except ValueError:
        job_id = None
    async with state.pool.connection() as conn:
        job = await jobs.get(conn, job_id) if job_id is not None else None
        stored = job.callback_token_sha256 if job is not None else None
        if not webhook_auth.token_matches(token, stored):
            reason = "missing_token" if not token else "bad_token" if job else "unknown_job"
            raise _Refused(401, reason, job_id)
        assert job is not None
        if job.status != JobStatus.PARSE_QUEUED:
            return await _acknowledge(conn, job.job_id, job, "not_waiting", actor=HINT_ACTOR)
        if not await jobs.wake_parse(conn, job.job_id):
            raise _Refused(409, "job_busy", job.job_id, busy=True)
        return await _acknowledge(conn, job.job_id, job, "woken", actor=HINT_ACTOR, status=202)


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
        action="webhook.accepted",
        outcome=outcome,
        job_id=job_id,
        document_id=job.document_id if job else None,
        correlation_id=job.correlation_id if job else None,
    )
    return JSONResponse({"status": outcome}, status_code=status)


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise _Refused(413, "too_large")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _Refused(413, "too_large")
        parts.append(chunk)
    return b"".join(parts)


async def _refuse(state: AppState, actor: str, refusal: _Refused) -> JSONResponse:
    REJECTIONS.labels(reason=refusal.reason).inc()
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
    log.info(
        "webhook rejected",
        extra={"action": "webhook_rejected", "reason": refusal.reason, "status": refusal.status},
    )
    # The hint route answers the same to a wrong token and an unknown job (no oracle).
    code = "unauthorized" if actor == HINT_ACTOR and refusal.status == 401 else refusal.reason
    headers = {"Retry-After": "1"} if refusal.busy else None
    return error_response(refusal.status, code, "callback refused", headers)
