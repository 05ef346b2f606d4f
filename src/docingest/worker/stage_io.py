"""Reads and writes several stages share: the audit event, the verified raw file, and the
parsed artifact committed together with the move to `parsed`."""

from __future__ import annotations

from collections.abc import Sequence

from docingest.domain.errors import ErrorCode, PermanentError
from docingest.domain.states import JobStatus
from docingest.pipeline.parsed_markdown import ParsedArtifact
from docingest.store import documents, events, jobs
from docingest.store.db import DictConn
from docingest.store.records import Job
from docingest.worker.context import StageContext


async def event(conn: DictConn, worker_id: str, job: Job, action: str, **detail: object) -> None:
    """A worker event, its actor the worker itself (a job moved to a terminal status has
    already given up its lease, so the row's `claimed_by` no longer names anyone)."""
    await events.record(
        conn,
        actor=f"worker:{worker_id}",
        action=action,
        job_id=job.job_id,
        document_id=job.document_id,
        correlation_id=job.correlation_id,
        detail=detail,
    )


async def load_raw(ctx: StageContext, job: Job) -> bytes:
    """The uploaded file, decrypted and checked against its recorded sha256."""
    async with ctx.pool.connection() as conn:
        doc = await documents.get_any(conn, job.document_id)
    if doc is None:
        raise PermanentError(ErrorCode.INTERNAL, "document row missing")
    return await ctx.blobs.get_bytes(job.raw_path, expected_sha256=doc.file_sha256)


async def store_parsed(
    ctx: StageContext,
    job: Job,
    artifact: ParsedArtifact,
    *,
    parser_name: str,
    parser_version: str,
    also: Sequence[str] = (),
    **detail: object,
) -> Job:
    """parse_queued -> parsed: the artifact (encrypted, content-addressed, so a repeat writes
    nothing new) is stored first, then recorded with the status. `also`: extra event actions."""
    await ctx.blobs.put_bytes(artifact.key, artifact.markdown.encode("utf-8"))
    async with ctx.pool.connection() as conn, conn.transaction():
        moved = await jobs.transition(
            conn,
            job,
            ctx.worker_id,
            JobStatus.PARSED,
            sets={
                "parsed_path": artifact.key,
                "parsed_sha256": artifact.sha256,
                "parser_name": parser_name,
                "parser_version": parser_version,
            },
        )
        await event(conn, ctx.worker_id, moved, "job.parsed", **detail)
        for action in also:
            await event(conn, ctx.worker_id, moved, action)
    return moved
