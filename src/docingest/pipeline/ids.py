"""Deterministic identifiers (DESIGN.md section 3).

Re-running a stage on the same input must produce the same keys, so every id here is a UUIDv5
in the project namespace.
"""

from __future__ import annotations

import hashlib
import re
from uuid import UUID, uuid5

NAMESPACE = UUID("6c8a1e6e-1f0b-4aa8-9f0a-1a7c2e6f2b42")
_NAMESPACE_BYTES = NAMESPACE.bytes

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def chunk_id(document_id: UUID, chunker_name: str, chunker_version: str, chunk_ord: int) -> UUID:
    """``uuid5(NAMESPACE, lower("{document_id}:{chunker_name}:{chunker_version}:{chunk_ord}"))``.

    The whole key is lower-cased, so ``"Markdown-Simple"`` and ``"markdown-simple"`` give the
    same id. ``chunk_ord`` is the 0-based position of the chunk in its document.
    """
    return UUID(bytes=chunk_id_bytes(document_id, chunker_name, chunker_version, chunk_ord))


def chunk_id_bytes(
    document_id: UUID, chunker_name: str, chunker_version: str, chunk_ord: int
) -> bytes:
    """The 16 bytes of :func:`chunk_id` (UUIDv5 done by hand), for checking many ids
    without building a UUID object for each (the 001 migration checks every chunk)."""
    if chunk_ord < 0:
        raise ValueError("chunk_ord must be >= 0")
    key = f"{document_id}:{chunker_name}:{chunker_version}:{chunk_ord}".lower()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return bytes(digest)


def document_id_for(user_id: UUID, file_sha256: str) -> UUID:
    """``uuid5(NAMESPACE, "document:{user_id}:{file_sha256}")``.

    The same user uploading the same bytes gets the same document id, which is what makes
    re-ingestion a no-op. ``file_sha256`` must be 64 hex digits; it is lower-cased first so that
    the id does not depend on how a caller spelled the digest.
    """
    if not _SHA256_HEX.fullmatch(file_sha256):
        raise ValueError("file_sha256 must be 64 hexadecimal digits")
    return uuid5(NAMESPACE, f"document:{user_id}:{file_sha256.lower()}")
