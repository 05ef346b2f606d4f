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
from docingest.store import events, jobs
from docingest.store.db import DictConn
from docingest.store.records import Job

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, principal: ReaderDep, conn: ConnDep) -> dict[str, Any]:
    job = await jobs.get(conn, parse_id(job_id, "job"), principal.owner_scope)
    if job is None:
        raise not_found("job")
    await audit.job_read(conn, principal, "job.read", job)
    return job.to_api()


@router.get("/jobs/{document_id}")
async def get_job_by_document(
    document_id: str, principal: ReaderDep, conn: ConnDep
) -> dict[str, Any]:
    job = await jobs.get_by_document(conn, parse_id(document_id, "document"), principal.owner_scope)
    if job is None:
        raise not_found("job")
    await audit.job_read(conn, principal, "job.read", job)
    return job.to_api()


async def _retry(
    conn: DictConn, job: Job | None, principal: Principal, max_user_retries: int
) -> JSONResponse:
    if job is None:
        raise not_found("job")
    retried = await jobs.retry_failed(conn, job.job_id, max_user_retries=max_user_retries)
    await events.record(
        conn,
        actor=principal.actor,
        action="job.retry",
        outcome="accepted" if retried else "refused",
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
    )
    if retried is None and job.status.is_failed and job.user_retries >= max_user_retries:
        raise ApiError(
            409, "retry_limit", f"job was already retried {job.user_retries} times; the limit"
        )
    if retried is None:
        raise ApiError(
            409, "not_failed", f"job is {job.status.value}; only failed jobs can be retried"
        )
    return JSONResponse(retried.to_api(), status_code=202)


@router.post("/v1/jobs/{job_id}/retry", status_code=202)
async def retry_job(
    job_id: str, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> JSONResponse:
    job = await jobs.get(conn, parse_id(job_id, "job"), principal.user_id)
    return await _retry(conn, job, principal, state.max_user_retries)


@router.post("/jobs/{document_id}/retry", status_code=202)
async def retry_job_by_document(
    document_id: str, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> JSONResponse:
    job = await jobs.get_by_document(conn, parse_id(document_id, "document"), principal.user_id)
    return await _retry(conn, job, principal, state.max_user_retries)


@router.post("/jobs/{document_id}/advance")
async def advance_job(document_id: str, admin: AdminDep, conn: ConnDep) -> dict[str, Any]:
    doc_id: UUID = parse_id(document_id, "document")
    cur = await conn.execute(
        "SELECT job_id FROM docingest.upload_jobs WHERE document_id = %s", (doc_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found("job")
    job = await jobs.advance(conn, row["job_id"])
    assert job is not None
    await events.record(
        conn,
        actor=admin.actor,
        action="job.advance",
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
        detail={"status": job.status.value},
    )
    return job.to_api()
