"""Encrypted blob store (DESIGN.md §1, §8; CONTRACTS.md §4 (a)(2)(iv), (c)(1), (c)(2)).

Every object is envelope-encrypted: a fresh random 256-bit data key per object encrypts
the content with AES-256-GCM in frames, and the data key is wrapped (AES-256-GCM) with
the master key, whose `key_id` is stored in the object's header. Rotating the master key
re-wraps data keys (`rewrap`) without re-encrypting content.

On-disk format (all integers big-endian), version 1:

    header, 88 bytes:
      magic "DIBE" | version u8 = 1 | wrap algorithm u8 = 1 (AES-256-GCM) | reserved u16 = 0
      | frame_size u32 (plaintext bytes per frame) | nonce_prefix 8 random bytes
      | key_id 8 ASCII hex chars (master key id) | wrap_nonce 12 random bytes
      | wrapped data key 48 bytes (32-byte key + 16-byte GCM tag)
    frames: AES-256-GCM(data key, nonce = nonce_prefix || u32 frame index,
            aad = "docingest/blob/frame/v1" || u16 len(object key) || object key
                  || u64 frame index || u8 final flag) -> ciphertext || 16-byte tag

Every frame but the last holds exactly frame_size plaintext bytes; the last one holds
1..frame_size bytes (0 only for an empty object) and is the only one sealed with the final
flag, so dropping, reordering or appending frames fails authentication. The wrap AAD is
"docingest/blob/dek/v1" || the first 28 header bytes || u16 len(object key) || object key,
so every header byte is authenticated and an object cannot be moved to another key. The
sha256 and size of the plaintext are computed while writing and re-verified on every read.

Files are 0600 and directories this module creates are 0700. Objects are immutable: a put
to an existing key succeeds only if the stored plaintext is identical (verified).
Messages and log lines carry object keys (ids and hashes), never content or filenames.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import struct
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from docingest.domain.errors import ErrorCode, PermanentError
from docingest.store.keys import MasterKey

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "BlobExists",
    "BlobInfo",
    "BlobIntegrityError",
    "BlobKeyUnavailable",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "LocalBlobStore",
    "validate_key",
]

DEFAULT_FRAME_SIZE = 1 << 20
MAX_FRAME_SIZE = 1 << 26
MAGIC = b"DIBE"
FORMAT_VERSION = 1
WRAP_AES256_GCM = 1
TAG_SIZE = 16
_DEK_SIZE = 32
_HEADER = struct.Struct(">4sBBHI8s8s12s48s")
HEADER_SIZE = _HEADER.size  # 88
_AUTH_PREFIX_SIZE = 28  # magic .. key_id: the header bytes bound into the wrap AAD
_FRAME_LABEL = b"docingest/blob/frame/v1"
_WRAP_LABEL = b"docingest/blob/dek/v1"
_MAX_FRAMES = 1 << 32
_COPY_CHUNK = 1 << 20

_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
_KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,15}}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})


# --------------------------------------------------------------------------- errors


class BlobTooLarge(PermanentError):
    """The content exceeded `max_bytes`; nothing was stored."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(ErrorCode.TOO_LARGE, f"content exceeds {max_bytes} bytes")
        self.max_bytes = max_bytes


class BlobIntegrityError(PermanentError):
    """The stored object failed authentication or its sha256 check. `reason` is one of
    header, wrapped_key, frame, truncated, sha256, key_unavailable (safe to log)."""

    def __init__(self, key: str, reason: str, message: str | None = None) -> None:
        super().__init__(
            ErrorCode.INTEGRITY_ERROR, message or f"blob {key} failed integrity verification"
        )
        self.key = key
        self.reason = reason


class BlobKeyUnavailable(BlobIntegrityError):
    """The object is wrapped with a master key this store was not given (fails closed)."""

    def __init__(self, key: str, key_id: str) -> None:
        super().__init__(
            key, "key_unavailable", f"blob {key} is wrapped with unknown master key id {key_id}"
        )
        self.key_id = key_id


class BlobNotFound(PermanentError):
    """No object under this key. Carries ErrorCode.INTEGRITY_ERROR: a blob the database
    refers to has gone missing, which is an integrity failure of the store."""

    def __init__(self, key: str) -> None:
        super().__init__(ErrorCode.INTEGRITY_ERROR, f"blob {key} not found")
        self.key = key


class BlobExists(PermanentError):
    """A put tried to replace an existing object with different content (objects are
    immutable; CONTRACTS.md §4 (c)(1)). Carries ErrorCode.INTEGRITY_ERROR."""

    def __init__(self, key: str) -> None:
        super().__init__(
            ErrorCode.INTEGRITY_ERROR, f"blob {key} already exists with different content"
        )
        self.key = key


# --------------------------------------------------------------------------- interface


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    sha256: str  # lowercase hex sha256 of the plaintext
    size: int  # plaintext bytes


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


def validate_key(key: str) -> str:
    """Object keys: 1-16 '/'-separated segments of [A-Za-z0-9._-] (<= 128 characters each),
    none starting with '.', so no '..', no absolute paths, no hidden or temporary names."""
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            "invalid blob key: expected 1-16 '/'-separated segments of [A-Za-z0-9._-] "
            "not starting with '.'"
        )
    return key


# --------------------------------------------------------------------------- format


@dataclass(frozen=True, slots=True)
class _Header:
    frame_size: int
    nonce_prefix: bytes
    key_id: str
    wrap_nonce: bytes
    wrapped_dek: bytes


def _encode_key(key: str) -> bytes:
    raw = key.encode("ascii")
    return struct.pack(">H", len(raw)) + raw


def _frame_aad(key_bytes: bytes, index: int, final: bool) -> bytes:
    return _FRAME_LABEL + key_bytes + struct.pack(">QB", index, 1 if final else 0)


def _frame_nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _pack_header(
    frame_size: int, nonce_prefix: bytes, master: MasterKey, dek: bytes, key_bytes: bytes
) -> bytes:
    wrap_nonce = secrets.token_bytes(12)
    prefix = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        WRAP_AES256_GCM,
        0,
        frame_size,
        nonce_prefix,
        master.key_id.encode("ascii"),
        b"\0" * 12,
        b"\0" * 48,
    )[:_AUTH_PREFIX_SIZE]
    wrapped = AESGCM(master.raw).encrypt(wrap_nonce, dek, _WRAP_LABEL + prefix + key_bytes)
    return prefix + wrap_nonce + wrapped


def _parse_header(key: str, data: bytes) -> _Header:
    if len(data) != HEADER_SIZE:
        raise BlobIntegrityError(key, "truncated")
    magic, version, wrap_alg, reserved, frame_size, prefix, key_id, wrap_nonce, wrapped = (
        _HEADER.unpack(data)
    )
    if (
        magic != MAGIC
        or version != FORMAT_VERSION
        or wrap_alg != WRAP_AES256_GCM
        or reserved != 0
        or not 1 <= frame_size <= MAX_FRAME_SIZE
        or re.fullmatch(rb"[0-9a-f]{8}", key_id) is None
    ):
        raise BlobIntegrityError(key, "header")
    return _Header(frame_size, prefix, key_id.decode("ascii"), wrap_nonce, wrapped)


def _frame_layout(key: str, body_len: int, frame_size: int) -> tuple[int, int]:
    """(number of frames, ciphertext length of the last frame) for a frames region."""
    per = frame_size + TAG_SIZE
    if body_len < TAG_SIZE:
        raise BlobIntegrityError(key, "truncated")
    count = max(1, -(-body_len // per))
    last = body_len - (count - 1) * per
    if last < TAG_SIZE or count > _MAX_FRAMES:
        raise BlobIntegrityError(key, "truncated")
    return count, last


def _read_exact(fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        part = os.read(fd, n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        self.key = key
        self.path = path
        self.tmp = _temp_path(path.parent)
        self._key_bytes = _encode_key(key)
        dek = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(dek)
        self._prefix = secrets.token_bytes(8)
        self._index = 0
        self._sha = hashlib.sha256()
        self._lock = threading.Lock()
        self._fd: int | None = _create_private(self.tmp)
        try:
            _write_all(
                self._fd, _pack_header(frame_size, self._prefix, master, dek, self._key_bytes)
            )
        except BaseException:
            self.abort()
            raise

    def write_frames(self, frames: Iterable[bytes | memoryview], *, final: bool) -> None:
        """Seal and append frames; with final=True the last of them closes the object."""
        with self._lock:
            fd = self._require_open()
            items = list(frames)
            for n, plain in enumerate(items):
                if self._index >= _MAX_FRAMES:
                    raise ValueError("object has too many frames")
                is_final = final and n == len(items) - 1
                self._sha.update(plain)
                nonce = _frame_nonce(self._prefix, self._index)
                aad = _frame_aad(self._key_bytes, self._index, is_final)
                _write_all(fd, self._aead.encrypt(nonce, plain, aad))
                self._index += 1
            if final:
                os.fsync(fd)
                os.close(fd)
                self._fd = None

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def publish(self, verify_existing: Callable[[], tuple[str, int]], info: BlobInfo) -> None:
        """Move the finished temp file to its key without ever replacing an existing object.

        link(2) fails if the destination exists; then the existing object is decrypted and
        must hold the same plaintext (idempotent put), else BlobExists.
        """
        with self._lock:
            if self._fd is not None:
                raise RuntimeError("publish before the final frame")
            try:
                try:
                    os.link(self.tmp, self.path)
                except FileExistsError:
                    self._check_existing(verify_existing, info)
                    return
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise
                    # No hard links on this filesystem: check-then-rename. Two puts racing
                    # on one key here can both "win"; keys are content-addressed, so the
                    # loser's object holds the same plaintext under a different data key.
                    if self.path.exists():
                        self._check_existing(verify_existing, info)
                        return
                    os.replace(self.tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)
            _fsync_dir(self.path.parent)

    @staticmethod
    def _check_existing(verify_existing: Callable[[], tuple[str, int]], info: BlobInfo) -> None:
        if verify_existing() != (info.sha256, info.size):
            raise BlobExists(info.key)

    def abort(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)

    def _require_open(self) -> int:
        if self._fd is None:
            raise RuntimeError("writer is closed")
        return self._fd


# --------------------------------------------------------------------------- store


class LocalBlobStore:
    """Encrypted objects under a local folder (`$DOCINGEST_HOME/blobs`).

    `master_key` wraps new objects; `old_keys` are accepted for reading and re-wrapping.
    """

    def __init__(
        self,
        root: Path,
        master_key: MasterKey,
        *,
        old_keys: Sequence[MasterKey] = (),
        frame_size: int = DEFAULT_FRAME_SIZE,
    ) -> None:
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size must be between 1 and {MAX_FRAME_SIZE}")
        self.root = Path(root)
        self.master_key = master_key
        self.frame_size = frame_size
        self._keys: dict[str, MasterKey] = {}
        for mk in (*old_keys, master_key):
            known = self._keys.get(mk.key_id)
            if known is not None and known.raw != mk.raw:
                raise ValueError(f"two different master keys share key id {mk.key_id}")
            self._keys[mk.key_id] = mk
        _make_private_dirs(self.root)

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
        fs = self.frame_size
        # Small synchronous calls (mkdir, open, an 88-byte write): doing them on the loop
        # means a cancellation can never orphan a temp file created in a worker thread.
        _make_private_dirs(path.parent)
        writer = _EncryptingWriter(key, path, self.master_key, fs)
        try:
            buf = bytearray()
            size = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                buf += chunk
                if len(buf) > fs:
                    # Emit full frames but keep >= 1 byte back: only the last frame is final.
                    # The filled buffer is handed over whole (zero-copy views); only the
                    # remainder (< 1 frame) is copied into a fresh buffer on the loop.
                    cut = (len(buf) - 1) // fs * fs
                    ready, buf = memoryview(buf), bytearray(buf[cut:])
                    frames = [ready[i : i + fs] for i in range(0, cut, fs)]
                    await asyncio.to_thread(writer.write_frames, frames, final=False)
            await asyncio.to_thread(writer.write_frames, [memoryview(buf)], final=True)
            info = BlobInfo(key, writer.hexdigest(), size)
            await asyncio.to_thread(writer.publish, lambda: self._digest_sync(key), info)
            return info
        finally:
            writer.abort()  # no-op after a successful publish: the temp file is gone

    async def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        return await asyncio.to_thread(self._put_bytes_sync, key, data)

    def _put_bytes_sync(self, key: str, data: bytes) -> BlobInfo:
        path = self._path(key)
        fs = self.frame_size
        _make_private_dirs(path.parent)
        writer = _EncryptingWriter(key, path, self.master_key, fs)
        try:
            view = memoryview(data)
            frames = [view[i : i + fs] for i in range(0, len(view), fs)] or [view]
            writer.write_frames(frames, final=True)
            info = BlobInfo(key, writer.hexdigest(), len(view))
            writer.publish(lambda: self._digest_sync(key), info)
            return info
        finally:
            writer.abort()

    # -- reading

    async def get_bytes(self, key: str, *, expected_sha256: str) -> bytes:
        """Decrypt and verify every frame and the plaintext sha256.

        Raises BlobNotFound, BlobIntegrityError (BlobKeyUnavailable when the wrapping
        master key is not known to this store), ValueError for an invalid key or sha256.
        """
        expected = expected_sha256.lower()
        if _SHA256_RE.fullmatch(expected) is None:
            raise ValueError("expected_sha256 must be 64 hex characters")
        self._path(key)
        return await asyncio.to_thread(self._get_bytes_sync, key, expected)

    def _get_bytes_sync(self, key: str, expected: str) -> bytes:
        sha = hashlib.sha256()
        parts: list[bytes] = []
        for plain in self._iter_plaintext(key):
            sha.update(plain)
            parts.append(plain)
        if sha.hexdigest() != expected:
            raise BlobIntegrityError(key, "sha256")
        return b"".join(parts)

    def _digest_sync(self, key: str) -> tuple[str, int]:
        """(sha256, size) of an object's verified plaintext."""
        sha = hashlib.sha256()
        size = 0
        for plain in self._iter_plaintext(key):
            sha.update(plain)
            size += len(plain)
        return sha.hexdigest(), size

    def _iter_plaintext(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        key_bytes = _encode_key(key)
        fd = self._open_object(key, path)
        try:
            header, dek = self._unwrap(key, key_bytes, _read_exact(fd, HEADER_SIZE))
            body_len = os.fstat(fd).st_size - HEADER_SIZE
            count, last = _frame_layout(key, body_len, header.frame_size)
            aead = AESGCM(dek)
            per = header.frame_size + TAG_SIZE
            for index in range(count):
                final = index == count - 1
                want = last if final else per
                sealed = _read_exact(fd, want)
                if len(sealed) != want:
                    raise BlobIntegrityError(key, "truncated")
                nonce = _frame_nonce(header.nonce_prefix, index)
                try:
                    yield aead.decrypt(nonce, sealed, _frame_aad(key_bytes, index, final))
                except InvalidTag:
                    raise BlobIntegrityError(key, "frame") from None
            if os.read(fd, 1):  # grew while we read
                raise BlobIntegrityError(key, "truncated")
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

    def _unwrap(self, key: str, key_bytes: bytes, data: bytes) -> tuple[_Header, bytes]:
        header = _parse_header(key, data)
        master = self._keys.get(header.key_id)
        if master is None:
            raise BlobKeyUnavailable(key, header.key_id)
        aad = _WRAP_LABEL + data[:_AUTH_PREFIX_SIZE] + key_bytes
        try:
            dek = AESGCM(master.raw).decrypt(header.wrap_nonce, header.wrapped_dek, aad)
        except InvalidTag:
            raise BlobIntegrityError(key, "wrapped_key") from None
        if len(dek) != _DEK_SIZE:
            raise BlobIntegrityError(key, "wrapped_key")
        return header, dek

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
            return _parse_header(key, _read_exact(fd, HEADER_SIZE)).key_id
        finally:
            os.close(fd)

    def rewrap(self, key: str, new_master: MasterKey) -> None:
        """Re-wrap the object's data key with `new_master`; the frames are copied verbatim.

        The old master key must be known to this store (as `master_key` or in `old_keys`).
        The new file replaces the old one atomically; afterwards this store also knows
        `new_master`. A no-op when the object is already wrapped with `new_master`.
        """
        path = self._path(key)
        key_bytes = _encode_key(key)
        fd = self._open_object(key, path)
        try:
            old_header_bytes = _read_exact(fd, HEADER_SIZE)
            header, dek = self._unwrap(key, key_bytes, old_header_bytes)
            known = self._keys.setdefault(new_master.key_id, new_master)
            if known.raw != new_master.raw:
                raise ValueError(f"two different master keys share key id {new_master.key_id}")
            if header.key_id == new_master.key_id:
                return
            new_header = _pack_header(
                header.frame_size, header.nonce_prefix, new_master, dek, key_bytes
            )
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
                if key.startswith(prefix) and _KEY_RE.fullmatch(key):
                    yield key


# --------------------------------------------------------------------------- helpers


def _replace_header(key: str, path: Path, src_fd: int, new_header: bytes) -> None:
    tmp = _temp_path(path.parent)
    out = _create_private(tmp)
    try:
        _write_all(out, new_header)
        os.lseek(src_fd, HEADER_SIZE, os.SEEK_SET)
        while block := os.read(src_fd, _COPY_CHUNK):
            _write_all(out, block)
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
    _fsync_dir(path.parent)


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    _fsync_dir(path.parent)
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
