"""Blob stores: the interface every store implements, and the local-folder store
(DESIGN.md §1, §8; CONTRACTS.md §4 (a)(2)(iv), (c)(1), (c)(2)).

There is one store implementation, `encrypted_blobs.EncryptedBlobStore`: objects are
envelope-encrypted in the format of `blob_format.py` (AES-256-GCM frames under a
per-object data key wrapped by the master key) over a raw backend that only moves bytes
(`blob_backend.py`): a local folder (`blobs_file.py`, here as `LocalBlobStore`) or an
S3-compatible bucket (`blobs_s3.py`). Both hold byte-identical objects.

Objects are immutable: a put to an existing key succeeds only if the stored plaintext is
identical (verified). Messages and log lines carry object keys (ids and hashes), never
content or filenames.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from docingest.store.blob_format import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    TAG_SIZE,
    BlobExists,
    BlobInfo,
    BlobIntegrityError,
    BlobKeyUnavailable,
    BlobNotFound,
    BlobTooLarge,
    KeySource,
    validate_key,
)
from docingest.store.blobs_file import FileBackend
from docingest.store.encrypted_blobs import EncryptedBlobStore
from docingest.store.keys import MasterKey

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "TAG_SIZE",
    "BlobExists",
    "BlobInfo",
    "BlobIntegrityError",
    "BlobKeyUnavailable",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "EncryptedBlobStore",
    "LocalBlobStore",
    "delete_prefix",
    "validate_key",
]


class BlobStore(Protocol):
    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo: ...

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo: ...

    async def get_bytes(self, key: str, *, expected_sha256: str) -> bytes: ...

    async def delete(self, key: str) -> bool: ...

    async def exists(self, key: str) -> bool: ...

    def rewrap(self, key: str, new_master: MasterKey) -> None: ...

    def key_id_of(self, key: str) -> str: ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]: ...

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified as unix time) of every stored object under `prefix`."""
        ...


async def delete_prefix(blobs: BlobStore, prefix: str) -> int:
    """Delete every object whose key starts with `prefix`; how many there were."""
    keys = await asyncio.to_thread(lambda: list(blobs.iter_keys(prefix)))
    for key in keys:
        await blobs.delete(key)
    return len(keys)


class LocalBlobStore(EncryptedBlobStore):
    """Encrypted objects under a local folder (`$DOCINGEST_HOME/blobs`), one file each."""

    def __init__(
        self,
        root: Path,
        master_key: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        key_source: KeySource | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
    ) -> None:
        self.root = Path(root)
        super().__init__(
            FileBackend(self.root),
            master_key,
            old_keys=old_keys,
            key_source=key_source,
            frame_size=frame_size,
        )
