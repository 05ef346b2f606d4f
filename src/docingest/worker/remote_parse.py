"""The parse stages for a remote parser (LlamaParse), DESIGN.md §2 and §5.

`uploaded`: upload the file with a webhook URL carrying the job's callback token, record the
parser's job id with the move to `parse_queued`, and release the job until the callback
deadline. The callback (API) moves it to `parsed` or wakes it. If neither happens in time,
the ordinary claim hands the job to `reconcile`: that is the reconciler, no sweeper needed.

`parse_queued` (`reconcile`): ask the parser. SUCCESS -> fetch, normalize and store the
markdown, move to `parsed`; PENDING -> wait again (not a failure); ERROR, PARTIAL_SUCCESS,
CANCELLED -> `failed_parse` with the parser's code; unknown job (404) -> resubmit once.

Every call to the parser (upload, status, result) goes through the shared circuit breaker
(service `parser`): while LlamaParse is down, jobs wait for the circuit instead of spending
their retry budget, and resume when a half-open probe finds it back.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import NoReturn

from docingest.domain import webhook_auth
from docingest.domain.circuit import BreakerPolicy
from docingest.domain.errors import Deferred, ErrorCode, PermanentError
from docingest.domain.states import JobStatus
from docingest.pipeline import parsed_markdown
from docingest.store import jobs
from docingest.store.records import Job
from docingest.worker.breaker import Breaker
from docingest.worker.context import CallbackSettings, RemoteParser, StageContext
from docingest.worker.stage_io import event, load_raw, store_parsed

SERVICE = "parser"  # the circuit breaker's name for the remote parser
MAX_RESUBMITS = 1
MAX_POLL_INTERVAL_S = 30.0


def _breaker(ctx: StageContext) -> Breaker:
    return ctx.parser_breaker or Breaker(
        ctx.pool, SERVICE, BreakerPolicy(), actor=f"worker:{ctx.worker_id}"
    )


def _callbacks(ctx: StageContext) -> CallbackSettings:
    if ctx.callbacks is None:
        raise PermanentError(ErrorCode.INTERNAL, "remote parser configured without callbacks")
    return ctx.callbacks


def webhook_url(cb: CallbackSettings, job: Job) -> str:
    token = webhook_auth.callback_token(cb.webhook_secret, job.job_id)
    return f"{cb.public_url.rstrip('/')}/webhooks/llamaparse/{job.job_id}?token={token}"


async def submit(ctx: StageContext, job: Job, remote: RemoteParser) -> NoReturn:
    """Send the file to the parser and wait for its callback (first submit or resubmit)."""
    cb = _callbacks(ctx)
    raw = await load_raw(ctx, job)
    upload = functools.partial(
        remote.submit,
        raw,
        job_id=job.job_id,
        document_id=job.document_id,
        webhook_url=webhook_url(cb, job),
    )
    del raw
    external_id = await _breaker(ctx).call(upload, operation="submit")
    del upload  # the last reference to the file's bytes
    token = webhook_auth.callback_token(cb.webhook_secret, job.job_id)
    sets: dict[str, object] = {
        "parse_external_id": external_id,
        "parse_submitted_at": datetime.now(UTC),
        "callback_token_sha256": webhook_auth.token_sha256(token),
        "parser_name": remote.name,
        "parser_version": remote.version,
    }
    resubmit = job.parse_external_id is not None
    async with ctx.pool.connection() as conn, conn.transaction():
        if job.status == JobStatus.UPLOADED:
            moved = await jobs.transition(
                conn, job, ctx.worker_id, JobStatus.PARSE_QUEUED, sets=sets
            )
        else:
            sets["parse_resubmits"] = job.parse_resubmits + int(resubmit)
            moved = await jobs.update_fields(conn, job, ctx.worker_id, sets)
        await event(
            conn, ctx.worker_id, moved, "parse.submitted", parser=remote.name, resubmit=resubmit
        )
    raise Deferred(cb.wait_s, "waiting for the parse callback")


async def reconcile(ctx: StageContext, job: Job, remote: RemoteParser) -> Job:
    """A waiting job whose callback did not come (or only hinted): ask the parser."""
    cb = _callbacks(ctx)
    if job.parse_external_id is None:  # queued by a worker with another parser
        await submit(ctx, job, remote)
    breaker = _breaker(ctx)
    external_id = job.parse_external_id
    status = await breaker.call(lambda: remote.status(external_id), operation="status")
    if status is None:
        if job.parse_resubmits >= MAX_RESUBMITS:
            raise PermanentError(
                ErrorCode.PARSER_FAILED, "the parser does not know this job, even resubmitted"
            )
        await submit(ctx, job, remote)
    if status.state == "pending":
        raise Deferred(min(cb.wait_s, MAX_POLL_INTERVAL_S), "remote parse still running")
    if status.state == "failed":
        raise PermanentError(
            ErrorCode.PARSER_FAILED,
            f"{remote.name} job ended {status.status} (error_code={status.error_code or 'none'})",
        )
    markdown = await breaker.call(lambda: remote.markdown(external_id), operation="result")
    artifact = parsed_markdown.prepare(
        job.document_id, job.job_id, markdown, ctx.work.max_document_chars
    )
    del markdown
    return await store_parsed(
        ctx,
        job,
        artifact,
        parser_name=remote.name,
        parser_version=remote.version,
        via="poll",
    )
