"""The raw side of a blob store: a backend that only moves bytes (DESIGN.md §1, §8).

A backend (`blobs_file.FileBackend`, `blobs_s3.S3Backend`) stores and returns opaque
bytes under a blob key and knows nothing of encryption; `encrypted_blobs.
EncryptedBlobStore` seals everything it writes and verifies everything it reads. What a
backend must guarantee is immutability: a new object never replaces an existing one
(`publish`), and a rewritten one replaces only the version that was read (`replace`).
Keys reaching a backend are already validated (`blob_format.validate_key`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol


class RawObject(Protocol):
    """One stored object, open for reading from its first byte."""

    size: int  # bytes this stream delivers (the whole object unless opened with `first`)
    version: str  # what `RawWriter.replace` checks: a file's inode, an S3 ETag

    def read(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at the end, or as the transport delivers them)."""
        ...

    def close(self) -> None: ...


class RawWriter(Protocol):
    """Bytes on their way to one key, invisible until committed; `abort` discards them."""

    def write(self, blocks: Iterable[bytes | memoryview]) -> None: ...

    def publish(self) -> bool:
        """Make the written bytes the object at the key unless the key already holds one.
        False (nothing changed) when it does: the caller compares contents."""
        ...

    def replace(self, version: str) -> None:
        """Make the written bytes the object at the key if it is still `version`.
        BlobNotFound when it was deleted meanwhile (never resurrect it),
        BlobIntegrityError when it changed."""
        ...

    def abort(self) -> None:
        """Discard what was written; a no-op after a commit. Safe from another thread."""
        ...


class RawBackend(Protocol):
    def writer(self, key: str) -> RawWriter:
        """Start a write (cheap: may run on the event loop)."""
        ...

    def open(self, key: str, *, first: int | None = None) -> RawObject:
        """Open for reading; `first` bytes are all the caller will read. BlobNotFound."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed."""
        ...

    def exists(self, key: str) -> bool: ...

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified as unix time) of every valid key under `prefix`."""
        ...
