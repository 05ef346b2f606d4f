"""Put a document straight into the queue at `parse_validated`, from markdown: for tests and
benchmarks of the chunk -> embed -> store path, without parsing a PDF first."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from docingest.pipeline.hashing import parsed_sha256
from docingest.pipeline.normalize import normalize_markdown
from docingest.store.blobs import BlobStore
from docingest.store.db import DictConn


@dataclass(frozen=True)
class Placed:
    document_id: uuid.UUID
    job_id: uuid.UUID


async def place_parsed(
    conn: DictConn, blobs: BlobStore, user_id: uuid.UUID, markdown: str
) -> Placed:
    """A document row and its job, as if the upload had been parsed into `markdown`."""
    doc, job = uuid.uuid4(), uuid.uuid4()
    md = normalize_markdown(markdown)
    sha = parsed_sha256(md)
    key = f"parsed/{doc}/{sha}.md.enc"
    await blobs.put_bytes(key, md.encode("utf-8"))
    await conn.execute(
        "INSERT INTO docingest.documents (document_id, user_id, filename, bytes_len,"
        " file_sha256, raw_path) VALUES (%s, %s, 'seeded.pdf', 1, %s, 'raw/seeded')",
        (doc, user_id, hashlib.sha256(doc.bytes).hexdigest()),  # no upload: a unique stand-in
    )
    await conn.execute(
        "INSERT INTO docingest.upload_jobs (job_id, user_id, document_id, raw_path, status,"
        " parsed_path, parsed_sha256, correlation_id)"
        " VALUES (%s, %s, %s, 'raw/seeded', 'parse_validated', %s, %s, %s)",
        (job, user_id, doc, key, sha, uuid.uuid4()),
    )
    return Placed(doc, job)
