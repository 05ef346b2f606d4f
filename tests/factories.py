"""Rows for tests that exercise the queue without going through an upload."""

from __future__ import annotations

import hashlib
import uuid

from docingest.store import jobs
from docingest.store.db import DictConn
from docingest.store.records import Job


async def make_job(conn: DictConn, user_id: uuid.UUID | None = None) -> Job:
    user_id = user_id or uuid.uuid4()
    document_id = uuid.uuid4()
    sha = hashlib.sha256(document_id.bytes).hexdigest()
    await conn.execute(
        "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len, file_sha256, raw_path)"
        " VALUES (%s, %s, 'x.pdf', 10, %s, %s)",
        (document_id, user_id, sha, f"raw/{user_id}/{document_id}.pdf.enc"),
    )
    job_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path, correlation_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (job_id, user_id, document_id, f"raw/{user_id}/{document_id}.pdf.enc", uuid.uuid4()),
    )
    job = await jobs.get(conn, job_id)
    assert job is not None
    return job
