"""The encrypted blob object format and the errors every blob backend shares
(DESIGN.md §1, §8; CONTRACTS.md §4 (a)(2)(iv), (c)(1), (c)(2)).

Every object is envelope-encrypted: a fresh random 256-bit data key per object encrypts
the content with AES-256-GCM in frames, and the data key is wrapped (AES-256-GCM) with
the master key, whose `key_id` is stored in the object's header. Rotating the master key
re-wraps data keys without re-encrypting content. The local folder (`blobs.py`) and the
S3-compatible bucket (`blobs_s3.py`) store byte-identical objects in this format, so an
object can be copied between backends and still decrypts.

Object format (all integers big-endian), version 1:

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

Messages carry object keys (ids and hashes), never content or filenames.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from docingest.domain.errors import ErrorCode, PermanentError
from docingest.store.keys import MasterKey

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "HEADER_SIZE",
    "KEY_RE",
    "MAX_FRAME_SIZE",
    "TAG_SIZE",
    "BlobExists",
    "BlobInfo",
    "BlobIntegrityError",
    "BlobKeyUnavailable",
    "BlobNotFound",
    "BlobTooLarge",
    "FrameSealer",
    "KeySource",
    "Keyring",
    "check_sha256",
    "decrypt_object",
    "read_exact",
    "read_key_id",
    "rewrapped_header",
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

_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
KEY_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,15}}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


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


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    sha256: str  # lowercase hex sha256 of the plaintext
    size: int  # plaintext bytes


def validate_key(key: str) -> str:
    """Object keys: 1-16 '/'-separated segments of [A-Za-z0-9._-] (<= 128 characters each),
    none starting with '.', so no '..', no absolute paths, no hidden or temporary names."""
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise ValueError(
            "invalid blob key: expected 1-16 '/'-separated segments of [A-Za-z0-9._-] "
            "not starting with '.'"
        )
    return key


def check_sha256(expected_sha256: str) -> str:
    """The expected plaintext sha256, lowercased; ValueError unless 64 hex characters."""
    expected = expected_sha256.lower()
    if _SHA256_RE.fullmatch(expected) is None:
        raise ValueError("expected_sha256 must be 64 hex characters")
    return expected


class KeySource(Protocol):
    """Where a running process re-reads its keys after a rotation (`keys.KeyFiles`)."""

    def changed(self) -> bool: ...

    def load(self) -> tuple[MasterKey, list[MasterKey]]: ...


class Keyring:
    """The master keys a store knows, by key id: `current` wraps new objects, every known
    key unwraps. Two different keys with one id are refused (the id is 32 bits of sha256).

    With a `source`, the keyring follows a rotation while the process runs: `current` is
    re-read when the source changed, and an unknown key id triggers a re-read too. Keys
    once known stay known (a reader must never lose a key mid-rotation).
    """

    def __init__(
        self,
        current: MasterKey,
        old_keys: Sequence[MasterKey] = (),
        *,
        source: KeySource | None = None,
    ) -> None:
        self._current = current
        self._source = source
        self._lock = threading.Lock()
        self._keys: dict[str, MasterKey] = {}
        for mk in (*old_keys, current):
            self.add(mk)
        if source is not None:
            self._refresh()

    @property
    def current(self) -> MasterKey:
        self._refresh()
        return self._current

    def add(self, mk: MasterKey) -> None:
        known = self._keys.setdefault(mk.key_id, mk)
        if known.raw != mk.raw:
            raise ValueError(f"two different master keys share key id {mk.key_id}")

    def get(self, key_id: str) -> MasterKey | None:
        found = self._keys.get(key_id)
        if found is None and self._refresh():
            found = self._keys.get(key_id)
        return found

    def _refresh(self) -> bool:
        """Re-read the source if it changed; True when it was re-read."""
        if self._source is None or not self._source.changed():
            return False
        with self._lock:
            current, previous = self._source.load()
            for mk in (*previous, current):
                self.add(mk)
            self._current = current
        return True


# --------------------------------------------------------------------------- header


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


def read_key_id(key: str, header_bytes: bytes) -> str:
    """The master key id recorded in a header (not authenticated here; unwrapping does)."""
    return _parse_header(key, header_bytes).key_id


def _unwrap(key: str, header_bytes: bytes, keyring: Keyring) -> tuple[_Header, bytes]:
    header = _parse_header(key, header_bytes)
    master = keyring.get(header.key_id)
    if master is None:
        raise BlobKeyUnavailable(key, header.key_id)
    aad = _WRAP_LABEL + header_bytes[:_AUTH_PREFIX_SIZE] + _encode_key(key)
    try:
        dek = AESGCM(master.raw).decrypt(header.wrap_nonce, header.wrapped_dek, aad)
    except InvalidTag:
        raise BlobIntegrityError(key, "wrapped_key") from None
    if len(dek) != _DEK_SIZE:
        raise BlobIntegrityError(key, "wrapped_key")
    return header, dek


def rewrapped_header(
    key: str, header_bytes: bytes, keyring: Keyring, new_master: MasterKey
) -> bytes | None:
    """The object's header with its data key re-wrapped under `new_master` (added to the
    keyring), or None when it is already wrapped with `new_master`. The frames stay valid:
    frame size, nonce prefix and data key are unchanged."""
    header, dek = _unwrap(key, header_bytes, keyring)
    keyring.add(new_master)
    if header.key_id == new_master.key_id:
        return None
    return _pack_header(header.frame_size, header.nonce_prefix, new_master, dek, _encode_key(key))


# --------------------------------------------------------------------------- writing


class FrameSealer:
    """Seals one object's frames in order under a fresh data key, counting the plaintext's
    sha256 and size. `header` is the object's first HEADER_SIZE bytes."""

    def __init__(self, key: str, master: MasterKey, frame_size: int) -> None:
        self.key = key
        self._key_bytes = _encode_key(key)
        dek = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(dek)
        self._prefix = secrets.token_bytes(8)
        self.header = _pack_header(frame_size, self._prefix, master, dek, self._key_bytes)
        self._index = 0
        self._sha = hashlib.sha256()
        self._size = 0
        self._closed = False

    def seal(self, frames: Iterable[bytes | memoryview], *, final: bool) -> list[bytes]:
        """The sealed frames; with final=True the last of them closes the object."""
        if self._closed:
            raise RuntimeError("object already sealed")
        items = list(frames)
        out: list[bytes] = []
        for n, plain in enumerate(items):
            if self._index >= _MAX_FRAMES:
                raise ValueError("object has too many frames")
            is_final = final and n == len(items) - 1
            self._sha.update(plain)
            self._size += len(plain)
            nonce = _frame_nonce(self._prefix, self._index)
            out.append(
                self._aead.encrypt(nonce, plain, _frame_aad(self._key_bytes, self._index, is_final))
            )
            self._index += 1
        self._closed = final
        return out

    def info(self) -> BlobInfo:
        if not self._closed:
            raise RuntimeError("object not sealed yet")
        return BlobInfo(self.key, self._sha.hexdigest(), self._size)


# --------------------------------------------------------------------------- reading


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


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to n bytes from `read`, fewer only at the end of the data."""
    parts: list[bytes] = []
    while n > 0:
        part = read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def decrypt_object(
    key: str, read: Callable[[int], bytes], total_len: int, keyring: Keyring
) -> Iterator[bytes]:
    """Authenticate and decrypt an object of `total_len` bytes read through `read(n)`
    (at most n bytes, b"" at the end), yielding the plaintext frame by frame."""
    header, dek = _unwrap(key, read_exact(read, HEADER_SIZE), keyring)
    key_bytes = _encode_key(key)
    count, last = _frame_layout(key, total_len - HEADER_SIZE, header.frame_size)
    aead = AESGCM(dek)
    per = header.frame_size + TAG_SIZE
    for index in range(count):
        final = index == count - 1
        want = last if final else per
        sealed = read_exact(read, want)
        if len(sealed) != want:
            raise BlobIntegrityError(key, "truncated")
        nonce = _frame_nonce(header.nonce_prefix, index)
        try:
            yield aead.decrypt(nonce, sealed, _frame_aad(key_bytes, index, final))
        except InvalidTag:
            raise BlobIntegrityError(key, "frame") from None
    if read(1):  # longer than announced (grew while we read)
        raise BlobIntegrityError(key, "truncated")
