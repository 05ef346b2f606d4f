"""The one encrypting blob store: envelope encryption, digests and key rewrap over any raw
backend (`blob_backend.RawBackend`: a local folder, an S3 bucket).

Objects are sealed in the format of `blob_format.py` before they reach the backend, so
storage only ever sees ciphertext, and every read re-verifies each frame and the
plaintext sha256. Objects are immutable: a put to an existing key succeeds only if the
stored plaintext is identical (verified), else BlobExists. Messages carry object keys
(ids and hashes), never content.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

from docingest.store.blob_backend import RawBackend, RawWriter
from docingest.store.blob_format import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    BlobExists,
    BlobInfo,
    BlobIntegrityError,
    BlobTooLarge,
    FrameSealer,
    Keyring,
    KeySource,
    check_sha256,
    decrypt_object,
    read_exact,
    read_key_id,
    rewrapped_header,
    validate_key,
)
from docingest.store.keys import MasterKey

_COPY_CHUNK = 1 << 20


class EncryptedBlobStore:
    """Encrypted objects over `backend`.

    `master_key` wraps new objects; `old_keys` are accepted for reading and re-wrapping;
    `key_source` (the key files) is followed through a rotation (`blob_format.Keyring`).
    """

    def __init__(
        self,
        backend: RawBackend,
        master_key: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        key_source: KeySource | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
    ) -> None:
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be between 1 and {MAX_FRAME_SIZE}")
        self.backend = backend
        self.frame_size = frame_size
        self._keyring = Keyring(master_key, old_keys, source=key_source)

    @property
    def master_key(self) -> MasterKey:
        """The key that wraps new objects (follows a rotation of the key files)."""
        return self._keyring.current

    # -- writing

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
        """Encrypt `chunks` to `key`, streaming; returns the plaintext's sha256 and size.

        Raises BlobTooLarge past `max_bytes` and BlobExists if the key holds different
        content (nothing is left behind either way), ValueError for an invalid key.
        """
        sealer = FrameSealer(validate_key(key), self.master_key, self.frame_size)
        # Starting the write and its 88-byte header are small synchronous calls: done on
        # the loop, a cancellation can never orphan a temp file made in a worker thread.
        writer = self.backend.writer(key)
        try:
            writer.write([sealer.header])
            await feed_frames(
                chunks,
                self.frame_size,
                max_bytes,
                lambda frames, final: writer.write(sealer.seal(frames, final=final)),
            )
            return await asyncio.to_thread(self._publish_then_abort, key, sealer.info(), writer)
        except BaseException:  # cancelled or failed before the thread above ended: abort here
            await asyncio.to_thread(writer.abort)  # idempotent if the thread already did
            raise

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        validate_key(key)
        return await asyncio.to_thread(self._put_bytes_sync, key, data)

    def _put_bytes_sync(self, key: str, data: bytes) -> BlobInfo:
        sealer = FrameSealer(key, self.master_key, self.frame_size)
        writer = self.backend.writer(key)
        try:
            writer.write([sealer.header])
            writer.write(sealer.seal(split_frames(data, self.frame_size), final=True))
            return self._publish(key, sealer.info(), writer)
        finally:
            writer.abort()

    def _publish_then_abort(self, key: str, info: BlobInfo, writer: RawWriter) -> BlobInfo:
        """`_publish`, then `writer.abort()` (a no-op once committed; it discards the upload
        when the key already held the object) in the same worker thread: one hand-off to a
        thread per upload fewer."""
        try:
            return self._publish(key, info, writer)
        finally:
            writer.abort()

    def _publish(self, key: str, info: BlobInfo, writer: RawWriter) -> BlobInfo:
        """Commit unless the key already holds an object, which must then hold the same
        plaintext (an idempotent put)."""
        if not writer.publish():
            ensure_same_content(info, self._digest_sync(key))
        return info

    # -- reading

    async def get_bytes(self, key: str, *, expected_sha256: str) -> bytes:
        """Decrypt and verify every frame and the plaintext sha256.

        Raises BlobNotFound, BlobIntegrityError (BlobKeyUnavailable when the wrapping
        master key is not known to this store), ValueError for an invalid key or sha256,
        TransientError when a remote backend cannot be reached.
        """
        expected = check_sha256(expected_sha256)
        validate_key(key)
        return await asyncio.to_thread(
            lambda: collect_verified(key, self._iter_plaintext(key), expected)
        )

    def _digest_sync(self, key: str) -> tuple[str, int]:
        """(sha256, size) of an object's verified plaintext."""
        return digest_of(self._iter_plaintext(key))

    def _iter_plaintext(self, key: str) -> Iterator[bytes]:
        stored = self.backend.open(key)
        try:
            yield from decrypt_object(key, stored.read, stored.size, self._keyring)
        finally:
            stored.close()

    # -- management

    async def delete(self, key: str) -> bool:
        """Remove the object; True if it existed."""
        return await asyncio.to_thread(self.backend.delete, validate_key(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.backend.exists, validate_key(key))

    def key_id_of(self, key: str) -> str:
        """The master key id recorded in the object's header (not authenticated here;
        `rewrap` and reads authenticate it)."""
        stored = self.backend.open(validate_key(key), first=HEADER_SIZE)
        try:
            return read_key_id(key, read_exact(stored.read, HEADER_SIZE))
        finally:
            stored.close()

    def rewrap(self, key: str, new_master: MasterKey) -> None:
        """Re-wrap the object's data key with `new_master`; the frames are copied verbatim,
        streamed block by block. The replacement is committed only if the object is still
        the version that was read, so a concurrent delete or change is never undone.

        The old master key must be known to this store (as `master_key` or in `old_keys`);
        afterwards this store also knows `new_master`. A no-op when the object is already
        wrapped with it.
        """
        stored = self.backend.open(validate_key(key))
        try:
            old_header = read_exact(stored.read, HEADER_SIZE)
            new_header = rewrapped_header(key, old_header, self._keyring, new_master)
            if new_header is None:
                return
            writer = self.backend.writer(key)
            try:
                writer.write([new_header])
                for block in iter(functools.partial(stored.read, _COPY_CHUNK), b""):
                    writer.write([block])
                writer.replace(stored.version)
            finally:
                writer.abort()
        finally:
            stored.close()

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored object key starting with `prefix` (for rotation, backup, audits)."""
        for key, _ in self.backend.iter_objects(prefix):
            yield key

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """(key, last modified as unix time) of every stored object under `prefix`."""
        return self.backend.iter_objects(prefix)


# --------------------------------------------------------------------------- plaintext streams


def split_frames(data: bytes | memoryview, frame_size: int) -> list[memoryview]:
    """`data` cut into frames (zero-copy); one empty frame for empty data."""
    view = memoryview(data)
    return [view[i : i + frame_size] for i in range(0, len(view), frame_size)] or [view]


async def feed_frames(
    chunks: AsyncIterator[bytes],
    frame_size: int,
    max_bytes: int | None,
    write: Callable[[list[memoryview], bool], None],
) -> None:
    """Cut a stream into frames and hand them to `write(frames, final)` in a worker thread.

    Full frames are handed over as soon as they are complete, but at least one byte is
    kept back so that only the last call is final. Raises BlobTooLarge past `max_bytes`.
    """
    buf = bytearray()
    size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BlobTooLarge(max_bytes)
        buf += chunk
        if len(buf) > frame_size:
            # The filled buffer is handed over whole (zero-copy views); only the
            # remainder (< 1 frame) is copied into a fresh buffer on the loop.
            cut = (len(buf) - 1) // frame_size * frame_size
            ready, buf = memoryview(buf), bytearray(buf[cut:])
            frames = [ready[i : i + frame_size] for i in range(0, cut, frame_size)]
            await asyncio.to_thread(write, frames, False)
    await asyncio.to_thread(write, [memoryview(buf)], True)


def collect_verified(key: str, plaintext: Iterable[bytes], expected_sha256: str) -> bytes:
    """The whole plaintext, after checking it against the sha256 the caller expects."""
    sha = hashlib.sha256()
    parts: list[bytes] = []
    for plain in plaintext:
        sha.update(plain)
        parts.append(plain)
    if sha.hexdigest() != expected_sha256:
        raise BlobIntegrityError(key, "sha256")
    return b"".join(parts)


def digest_of(plaintext: Iterable[bytes]) -> tuple[str, int]:
    """(sha256, size) of a verified plaintext stream."""
    sha = hashlib.sha256()
    size = 0
    for plain in plaintext:
        sha.update(plain)
        size += len(plain)
    return sha.hexdigest(), size


def ensure_same_content(info: BlobInfo, existing: tuple[str, int]) -> None:
    """Idempotent put: an existing object is accepted only if it holds the same plaintext."""
    if existing != (info.sha256, info.size):
        raise BlobExists(info.key)
