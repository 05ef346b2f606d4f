"""`/v1/documents`: upload (streamed, encrypted, deduplicated), list, read, delete."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from docingest.api import audit
from docingest.api.deps import ConnDep, PrincipalDep, ReaderDep, StateDep, parse_id
from docingest.api.errors import ApiError, not_found
from docingest.api.job_body import job_body
from docingest.api.multipart_stream import FilePart, boundary_of, file_part_stream
from docingest.api.schemas import DocumentDetail, DocumentPage, UploadAccepted, errors
from docingest.domain.errors import ErrorCode
from docingest.store import documents, events, jobs
from docingest.store.records import Document, Job

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/documents", tags=["documents"])

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# deeper pages are refused (422) before they reach SQL (OFFSET is a bigint)
MAX_OFFSET = 1_000_000_000


@router.post(
    "",
    status_code=202,
    response_model=UploadAccepted,
    responses=errors(400, 401, 408, 411, 413, 415, 422, 429, 503),
)
async def upload(request: Request, state: StateDep, principal: PrincipalDep) -> JSONResponse:
    """The body streams into the encrypted blob store without a database connection (a slow
    or stalled client holds only its own request slot, never the pool); the connection is
    taken for the one transaction that records document + job. Body size and deadlines are
    enforced at the edge (api/edge.py) as well as here."""
    boundary = boundary_of(request.headers.get("content-type"))
    expected_sha256 = _content_sha256(request.headers.get("content-sha256"))
    part = FilePart()
    cid = audit.correlation_id(request)
    stored = await documents.store_upload(
        state.blobs,
        user_id=principal.user_id,
        chunks=file_part_stream(request.stream(), boundary, part),
        max_bytes=state.max_upload_bytes,
        expected_sha256=expected_sha256,
    )
    result = await documents.record_upload(
        state.pool.connection(),
        state.blobs,
        stored,
        user_id=principal.user_id,
        filename=part.filename,
        actor=principal.actor,
        correlation_id=cid,
    )
    # a new document's job carries `cid`, and every worker line about it does too (a
    # duplicate keeps the job, and the correlation id, of its first upload)
    log.info(
        "document uploaded",
        extra={
            "action": "document_upload",
            "document_id": str(result.document_id),
            "job_id": str(result.job_id),
            "correlation_id": str(cid),
            "duplicate": result.duplicate,
        },
    )
    return JSONResponse(
        {
            "document_id": str(result.document_id),
            "job_id": str(result.job_id),
            "status": result.status.value,
            "duplicate": result.duplicate,
        },
        status_code=202,
        headers={"X-Correlation-Id": str(cid)},
    )


def _content_sha256(raw: str | None) -> str | None:
    """The optional `Content-SHA256` header (45 CFR 164.312(e)(2)(i)): 64 hex digits, any case."""
    if raw is None:
        return None
    value = raw.strip().lower()
    if not _SHA256_HEX.fullmatch(value):
        raise ApiError(422, ErrorCode.MALFORMED_REQUEST, "Content-SHA256 must be 64 hex digits")
    return value


def _document_body(doc: Document, job: Job) -> dict[str, Any]:
    return {
        "document_id": str(doc.document_id),
        "filename": doc.filename,
        "mime": doc.mime,
        "bytes_len": doc.bytes_len,
        "file_sha256": doc.file_sha256,
        "created_at": doc.created_at.isoformat(),
        "job_id": str(job.job_id),
        "status": job.status.value,
    }


@router.get("", response_model=DocumentPage, responses=errors(401, 422, 429, 503))
async def list_documents(
    request: Request,
    principal: PrincipalDep,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    pairs, total = await documents.list_for_user(
        conn, principal.user_id, limit=limit, offset=offset
    )
    await events.record(
        conn,
        actor=principal.actor,
        action="document.list",
        correlation_id=audit.correlation_id(request),
        detail={"limit": limit, "offset": offset, "returned": len(pairs)},
    )
    return {
        "documents": [_document_body(d, j) for d, j in pairs],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{document_id}", response_model=DocumentDetail, responses=errors(401, 404, 429, 503))
async def get_document(document_id: str, principal: ReaderDep, conn: ConnDep) -> dict[str, Any]:
    doc_id = parse_id(document_id, "document")
    doc = await documents.get(conn, doc_id, principal.owner_scope)
    job = await jobs.get_by_document(conn, doc_id, principal.owner_scope) if doc else None
    if doc is None or job is None:
        raise not_found("document")
    counts = await documents.chunk_count(conn, doc_id)
    await audit.job_read(conn, principal, "document.read", job)
    return {**_document_body(doc, job), **counts, "job": job_body(job)}


@router.delete("/{document_id}", status_code=204, responses=errors(401, 404, 429, 503))
async def delete_document(
    document_id: str, state: StateDep, principal: PrincipalDep, conn: ConnDep
) -> Response:
    doc_id = parse_id(document_id, "document")
    if not await documents.delete(
        conn, state.blobs, doc_id, principal.user_id, actor=principal.actor
    ):
        raise not_found("document")
    state.vacuum.request()  # the dead rows' bytes: store/vacuum.py
    return Response(status_code=204)
