"""Blob stores: the interface every backend implements, and the local-folder backend
(DESIGN.md §1, §8; CONTRACTS.md §4 (a)(2)(iv), (c)(1), (c)(2)).

Objects are envelope-encrypted in the format of `blob_format.py` (AES-256-GCM frames under
a per-object data key wrapped by the master key); the S3-compatible backend is
`blobs_s3.py`. Here each object is one file under `root`, holding exactly the object bytes.

Files are 0600 and directories this module creates are 0700. Objects are immutable: a put
to an existing key succeeds only if the stored plaintext is identical (verified).
Messages and log lines carry object keys (ids and hashes), never content or filenames.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import secrets
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from docingest.store.blob_format import (
    DEFAULT_FRAME_SIZE,
    HEADER_SIZE,
    KEY_RE,
    MAX_FRAME_SIZE,
    TAG_SIZE,
    BlobExists,
    BlobInfo,
    BlobIntegrityError,
    BlobKeyUnavailable,
    BlobNotFound,
    BlobTooLarge,
    FrameSealer,
    Keyring,
    KeySource,
    check_sha256,
    collect_verified,
    decrypt_object,
    digest_of,
    ensure_same_content,
    feed_frames,
    read_exact,
    read_key_id,
    rewrapped_header,
    split_frames,
    validate_key,
)
from docingest.store.fsutil import fsync_dir, write_all
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
    "LocalBlobStore",
    "delete_prefix",
    "validate_key",
]

_COPY_CHUNK = 1 << 20
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})


# --------------------------------------------------------------------------- interface


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


# --------------------------------------------------------------------------- files


def _temp_path(directory: Path) -> Path:
    return directory / f".tmp-{secrets.token_hex(12)}"


def _create_private(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# --------------------------------------------------------------------------- writer


class _EncryptingWriter:
    """Encrypts frames into a private temporary file next to the destination.

    All file operations hold `_lock`, so `abort()` (which may run on the event loop after
    a cancellation) waits for an in-flight worker-thread write instead of racing it.
    """

    def __init__(self, key: str, path: Path, master: MasterKey, frame_size: int) -> None:
        self.path = path
        self.tmp = _temp_path(path.parent)
        self._sealer = FrameSealer(key, master, frame_size)
        self._lock = threading.Lock()
        self._fd: int | None = _create_private(self.tmp)
        try:
            write_all(self._fd, self._sealer.header)
        except BaseException:
            self.abort()
            raise

    def write_frames(self, frames: Iterable[bytes | memoryview], final: bool) -> None:
        """Seal and append frames; with final=True the last of them closes the object."""
        with self._lock:
            if self._fd is None:
                raise RuntimeError("writer is closed")
            for sealed in self._sealer.seal(frames, final=final):
                write_all(self._fd, sealed)
            if final:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def publish(self, existing_digest: Callable[[], tuple[str, int]]) -> BlobInfo:
        """Move the finished temp file to its key without ever replacing an existing object.

        link(2) fails if the destination exists; then the existing object is decrypted and
        must hold the same plaintext (idempotent put), else BlobExists.
        """
        with self._lock:
            info = self._sealer.info()
            try:
                try:
                    os.link(self.tmp, self.path)
                except FileExistsError:
                    ensure_same_content(info, existing_digest())
                    return info
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise
                    # No hard links on this filesystem: check-then-rename. Two puts racing
                    # on one key here can both "win"; keys are content-addressed, so the
                    # loser's object holds the same plaintext under a different data key.
                    if self.path.exists():
                        ensure_same_content(info, existing_digest())
                        return info
                    os.replace(self.tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)
            fsync_dir(self.path.parent)
            return info

    def abort(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


# --------------------------------------------------------------------------- store


class LocalBlobStore:
    """Encrypted objects under a local folder (`$DOCINGEST_HOME/blobs`).

    `master_key` wraps new objects; `old_keys` are accepted for reading and re-wrapping;
    `key_source` (the key files) is followed through a rotation (`blob_format.Keyring`).
    """

    def __init__(
        self,
        root: Path,
        master_key: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        key_source: KeySource | None = None,
        frame_size: int = DEFAULT_FRAME_SIZE,
    ) -> None:
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be between 1 and {MAX_FRAME_SIZE}")
        self.root = Path(root)
        self.frame_size = frame_size
        self._keyring = Keyring(master_key, old_keys, source=key_source)
        _make_private_dirs(self.root)

    @property
    def master_key(self) -> MasterKey:
        """The key that wraps new objects (follows a rotation of the key files)."""
        return self._keyring.current

    # -- paths

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    # -- writing

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
        """Encrypt `chunks` to `key`, streaming; returns the plaintext's sha256 and size.

        Raises BlobTooLarge past `max_bytes` (nothing is left on disk), BlobExists if the
        key holds different content, ValueError for an invalid key.
        """
        path = self._path(key)
        # Small synchronous calls (mkdir, open, an 88-byte write): doing them on the loop
        # means a cancellation can never orphan a temp file created in a worker thread.
        _make_private_dirs(path.parent)
        writer = _EncryptingWriter(key, path, self.master_key, self.frame_size)
        try:
            await feed_frames(chunks, self.frame_size, max_bytes, writer.write_frames)
            return await asyncio.to_thread(writer.publish, lambda: self._digest_sync(key))
        finally:
            writer.abort()  # no-op after a successful publish: the temp file is gone

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        return await asyncio.to_thread(self._put_bytes_sync, key, data)

    def _put_bytes_sync(self, key: str, data: bytes) -> BlobInfo:
        path = self._path(key)
        _make_private_dirs(path.parent)
        writer = _EncryptingWriter(key, path, self.master_key, self.frame_size)
        try:
            writer.write_frames(split_frames(data, self.frame_size), True)
            return writer.publish(lambda: self._digest_sync(key))
        finally:
            writer.abort()

    # -- reading

    async def get_bytes(self, key: str, *, expected_sha256: str) -> bytes:
        """Decrypt and verify every frame and the plaintext sha256.

        Raises BlobNotFound, BlobIntegrityError (BlobKeyUnavailable when the wrapping
        master key is not known to this store), ValueError for an invalid key or sha256.
        """
        expected = check_sha256(expected_sha256)
        self._path(key)
        return await asyncio.to_thread(
            lambda: collect_verified(key, self._iter_plaintext(key), expected)
        )

    def _digest_sync(self, key: str) -> tuple[str, int]:
        """(sha256, size) of an object's verified plaintext."""
        return digest_of(self._iter_plaintext(key))

    def _iter_plaintext(self, key: str) -> Iterator[bytes]:
        fd = self._open_object(key, self._path(key))
        try:
            read = functools.partial(os.read, fd)
            yield from decrypt_object(key, read, os.fstat(fd).st_size, self._keyring)
        finally:
            os.close(fd)

    @staticmethod
    def _open_object(key: str, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BlobNotFound(key)
        return fd

    # -- management

    async def delete(self, key: str) -> bool:
        """Remove the object; True if it existed."""
        path = self._path(key)
        return await asyncio.to_thread(_unlink, path)

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def key_id_of(self, key: str) -> str:
        """The master key id recorded in the object's header (not authenticated here;
        `rewrap` and reads authenticate it)."""
        path = self._path(key)
        fd = self._open_object(key, path)
        try:
            return read_key_id(key, read_exact(functools.partial(os.read, fd), HEADER_SIZE))
        finally:
            os.close(fd)

    def rewrap(self, key: str, new_master: MasterKey) -> None:
        """Re-wrap the object's data key with `new_master`; the frames are copied verbatim.

        The old master key must be known to this store (as `master_key` or in `old_keys`).
        The new file replaces the old one atomically; afterwards this store also knows
        `new_master`. A no-op when the object is already wrapped with `new_master`.
        """
        path = self._path(key)
        fd = self._open_object(key, path)
        try:
            old_header = read_exact(functools.partial(os.read, fd), HEADER_SIZE)
            new_header = rewrapped_header(key, old_header, self._keyring, new_master)
            if new_header is not None:
                _replace_header(key, path, fd, new_header)
        finally:
            os.close(fd)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every stored object key starting with `prefix` (for rotation, backup, audits)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.root)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                key = (rel / name).as_posix()
                if key.startswith(prefix) and KEY_RE.fullmatch(key):
                    yield key

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for key in self.iter_keys(prefix):
            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                yield key, self._path(key).stat().st_mtime


# --------------------------------------------------------------------------- helpers


def _replace_header(key: str, path: Path, src_fd: int, new_header: bytes) -> None:
    tmp = _temp_path(path.parent)
    out = _create_private(tmp)
    try:
        write_all(out, new_header)
        os.lseek(src_fd, HEADER_SIZE, os.SEEK_SET)
        while block := os.read(src_fd, _COPY_CHUNK):
            write_all(out, block)
        os.fsync(out)
        os.close(out)
        out = -1
        try:
            current = os.stat(path)
        except FileNotFoundError:
            raise BlobNotFound(key) from None  # deleted meanwhile: do not resurrect it
        if current.st_ino != os.fstat(src_fd).st_ino:
            raise BlobIntegrityError(key, "header", f"blob {key} changed during rewrap")
        os.replace(tmp, path)
    finally:
        if out >= 0:
            os.close(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    fsync_dir(path.parent)
    return True


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents, each with mode 0700."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
