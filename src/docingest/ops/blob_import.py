"""Raw and parsed files of a 001 storage export -> docingest's encrypted blob store.

001 records files as `storage://raw/{user_id}/{document_id}.pdf` and
`storage://parsed/{user_id}/{document_id}.md`; an export of its buckets holds them at
`DIR/raw/...` and `DIR/parsed/...`. Every file is checked against the sha256 001 recorded
before it is stored (encrypted); a file that is missing or differs is reported, never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from docingest.domain.legacy_001 import export_path
from docingest.store.blobs import BlobStore


def raw_key(user_id: UUID, document_id: UUID) -> str:
    return f"raw/{user_id}/{document_id}.pdf.enc"


def parsed_key(document_id: UUID, parsed_sha256: str) -> str:
    """The key the 002 parse stage itself uses for this artifact."""
    return f"parsed/{document_id}/{parsed_sha256}.md.enc"


@dataclass(frozen=True)
class Imported:
    key: str | None  # the blob key, or None when the file could not be used
    problem: str | None  # why not (a reason without file content or names)


async def import_file(
    blobs: BlobStore,
    root: Path,
    legacy_path: str,
    expected_sha256: str,
    key: str,
    *,
    write: bool,
) -> Imported:
    """Check one exported file against its sha256 and store it under `key` (unless
    `write` is False: a dry run checks and writes nothing)."""
    path = export_path(root, legacy_path)
    if path is None or not path.is_file():
        return Imported(None, "blob_missing: file not found in the --blobs-from export")
    data = await asyncio.to_thread(path.read_bytes)
    if hashlib.sha256(data).hexdigest() != expected_sha256.lower():
        return Imported(None, "blob_sha_mismatch: exported file differs from its recorded sha256")
    if write:
        await blobs.put_bytes(key, data)
    return Imported(key, None)
