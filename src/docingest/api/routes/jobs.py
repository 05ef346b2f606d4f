"""Job status, retry and admin advance: `/v1/jobs/{job_id}` and the seed's `/jobs/{document_id}`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from docingest.api import audit
from docingest.api.auth import Principal
from docingest.api.deps import AdminDep, ConnDep, PrincipalDep, ReaderDep, StateDep, parse_id
from docingest.api.errors import ApiError, not_found
from docingest.api.job_body import job_body
from docingest.api.schemas import JobBody, errors
from docingest.store import events, jobs
from docingest.store.db import DictConn
from docingest.store.records import Job

router = APIRouter(tags=["jobs"])
_READ_ERRORS = errors(401, 404, 429, 503)
_RETRY_ERRORS = errors(401, 404, 409, 429, 503)


@router.get("/v1/jobs/{job_id}", response_model=JobBody, responses=_READ_ERRORS)
async def get_job(job_id: str, principal: ReaderDep, conn: ConnDep) -> dict[str, Any]:
    job = await jobs.get(conn, parse_id(job_id, "job"), principal.owner_scope)
    if job is None:
        raise not_found("job")
    await audit.job_read(conn, principal, "job.read", job)
    return job_body(job)


@router.get("/jobs/{document_id}", response_model=JobBody, responses=_READ_ERRORS)
async def get_job_by_document(
    document_id: str, principal: ReaderDep, conn: ConnDep
) -> dict[str, Any]:
    job = await jobs.get_by_document(conn, parse_id(document_id, "document"), principal.owner_scope)
    if job is None:
        raise not_found("job")
    await audit.job_read(conn, principal, "job.read", job)
    return job_body(job)


async def _retry(
    conn: DictConn, job: Job | None, principal: Principal, max_user_retries: int
) -> JSONResponse:
    if job is None:
        raise not_found("job")
    accepted = jobs.StatusEvent(actor=principal.actor, action="job.retry", outcome="accepted")
    retried = await jobs.retry_failed(conn, job.job_id, accepted, max_user_retries=max_user_retries)
    if retried is None:  # no status change: the refusal is recorded on its own
        await events.record_for_job(
            conn, job, actor=principal.actor, action="job.retry", outcome="refused"
        )
    if retried is None and job.status.is_failed and job.user_retries >= max_user_retries:
        raise ApiError(
            409, "retry_limit", f"job was already retried {job.user_retries} times; the limit"
        )
    if retried is None:
        raise ApiError(
            409, "not_failed", f"job is {job.status.value}; only failed jobs can be retried"
        )
    return JSONResponse(job_body(retried), status_code=202)


@router.post(
    "/v1/jobs/{job_id}/retry", status_code=202, response_model=JobBody, responses=_RETRY_ERRORS
)
async def retry_job(
    job_id: str, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> JSONResponse:
    job = await jobs.get(conn, parse_id(job_id, "job"), principal.user_id)
    return await _retry(conn, job, principal, state.max_user_retries)


@router.post(
    "/jobs/{document_id}/retry",
    status_code=202,
    response_model=JobBody,
    responses=_RETRY_ERRORS,
)
async def retry_job_by_document(
    document_id: str, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> JSONResponse:
    job = await jobs.get_by_document(conn, parse_id(document_id, "document"), principal.user_id)
    return await _retry(conn, job, principal, state.max_user_retries)


@router.post(
    "/jobs/{document_id}/advance", response_model=JobBody, responses=errors(401, 403, 404, 503)
)
async def advance_job(document_id: str, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    doc_id: UUID = parse_id(document_id, "document")
    cur = await conn.execute(
        "SELECT job_id FROM docingest.upload_jobs WHERE document_id = %s", (doc_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found("job")
    job = await jobs.advance(conn, row["job_id"], admin.actor)
    if job is None:  # deleted since
        raise not_found("job")
    return job_body(job)
