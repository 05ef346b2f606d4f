"""No blob outlives its document: what a stage wrote after its document was deleted.

A DELETE removes the document's rows and the blobs they name, but a worker in the middle of a
stage may write the parsed artifact a moment later; its fenced status change then finds no row
(`LeaseLost`). The artifact's key is the job's own (`parsed/{document}/{job}/...`,
pipeline/parsed_markdown.py), so when the job row is gone everything under that prefix is
removed, without any risk to another job's blobs. A job that still exists (its lease passed to
another worker) keeps them: the new owner may record the same key. Anything a crash leaves
behind anyway is found by `docingest purge`'s sweep of unreferenced blobs (ops/orphans.py).
"""

from __future__ import annotations

from docingest.pipeline.parsed_markdown import job_prefix
from docingest.store import jobs
from docingest.store.blobs import delete_prefix
from docingest.store.records import Job
from docingest.worker.context import StageContext


async def drop_if_deleted(ctx: StageContext, job: Job) -> int:
    """After a lost lease: the job's own artifacts when its row is gone; how many."""
    async with ctx.pool.connection() as conn:
        if await jobs.get(conn, job.job_id) is not None:
            return 0
    return await delete_prefix(ctx.blobs, job_prefix(job.document_id, job.job_id))
