"""No blob outlives its document (issue 11): a DELETE while a worker holds the job, at every
stage, leaves no row and no blob behind. For the parse stage the delete lands inside the
stage, between the moment the parsed artifact is computed and the moment it is written (the
window in which the artifact used to be orphaned)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from docingest.bootstrap import parser
from docingest.domain.states import JobStatus
from docingest.store import documents
from docingest.store.blob_format import BlobInfo
from docingest.store.blobs import LocalBlobStore
from docingest.store.db import open_pool
from docingest.worker.base import BaseWorker, WorkerOptions
from docingest.worker.context import StageContext
from docingest.worker.stages import STAGES
from tests.conftest import EXAMPLES
from tests.helpers import claim_one, counts, make_runtime, upload

PDF = EXAMPLES / "glossary_cms_uniform_health_coverage.pdf"


class DeletingBlobs(LocalBlobStore):
    """The real store; the first artifact write is preceded by a DELETE of the document."""

    before_put: Callable[[], Awaitable[None]] | None = None

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        hook, self.before_put = self.before_put, None
        if hook is not None:
            await hook()
        return await super().put_bytes(key, data)


@pytest.mark.parametrize("status", list(STAGES))
async def test_delete_while_a_worker_holds_the_job_leaves_nothing(
    dsn: str, tmp_path: Path, status: JobStatus
) -> None:
    rt = make_runtime(dsn, tmp_path)
    root = rt.settings.home / "blobs"
    blobs = DeletingBlobs(root, rt.blobs.master_key)  # type: ignore[attr-defined]
    pool = await open_pool(dsn)
    try:
        user = uuid.uuid4()
        async with pool.connection() as conn:
            res = await upload(conn, rt, user, PDF)
        ctx = StageContext(
            pool=pool, blobs=blobs, parser=parser(rt.settings), embedder=rt.embedder, worker_id="w"
        )
        async with pool.connection() as conn:
            job = await claim_one(conn, "w", lease_s=300)
        assert job is not None
        while job.status != status:
            job = await STAGES[job.status](ctx, job)

        async def delete() -> None:
            async with pool.connection() as conn:
                assert await documents.delete(conn, rt.blobs, res.document_id, user, actor="t")

        if status == JobStatus.PARSE_QUEUED:
            blobs.before_put = delete  # inside the stage, just before the artifact is written
        else:
            await delete()  # the worker still holds the job and runs its stage next
        worker = BaseWorker(ctx, dsn=dsn, options=WorkerOptions(concurrency=1))
        await worker._process(job)  # the worker's own handling: lease lost, then cleanup
    finally:
        await pool.close()
    assert set(counts(dsn).values()) == {0}
    assert [p for p in root.rglob("*") if p.is_file()] == []
