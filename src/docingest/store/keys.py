"""The master key that wraps every blob's data key (DESIGN.md §7, §8).

Source, in order: `DOCINGEST_MASTER_KEY` (32 bytes as base64, urlsafe base64 or 64 hex
characters), else `$DOCINGEST_HOME/master.key`, generated on first run (32 random bytes,
base64 text, mode 0600). Keys retired by a rotation stay readable (never used to wrap new
objects) until every object is re-wrapped: `DOCINGEST_MASTER_KEY_PREVIOUS` (comma-separated)
with the environment key, `$DOCINGEST_HOME/master.key.previous` (one key a line) with the
key file. `KeyFiles` lets a running process follow a rotation of the key files. The key never leaves this process in logs or exception messages;
only its `key_id` (first 8 hex characters of sha256 of the key) is safe to show or store.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from docingest.store.fsutil import fsync_dir, write_all

__all__ = [
    "KEY_BYTES",
    "KEY_FILE_NAME",
    "PREVIOUS_FILE_NAME",
    "KeyFiles",
    "MasterKey",
    "decode_key_text",
    "load_master_key",
    "load_previous_keys",
    "write_key_files",
]

log = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_FILE_NAME = "master.key"
PREVIOUS_FILE_NAME = "master.key.previous"
_ENV_ERROR = "DOCINGEST_MASTER_KEY must be 32 bytes, base64 or hex"
_PREVIOUS_ENV_ERROR = "DOCINGEST_MASTER_KEY_PREVIOUS must be comma-separated 32-byte keys"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# How long a process that lost the creation race waits for the winner's bytes to land
# (only on filesystems without hard links, where the file is written in place).
_RACE_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class MasterKey:
    """32 bytes of key material and its public id. `repr` never shows the material."""

    raw: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise ValueError(f"a master key must be exactly {KEY_BYTES} bytes")
        object.__setattr__(self, "key_id", hashlib.sha256(self.raw).hexdigest()[:8])

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def to_text(self) -> str:
        """The key as standard base64 text (the key file's format). Secret: never log it."""
        return base64.b64encode(self.raw).decode("ascii")


def decode_key_text(text: str) -> bytes | None:
    """Decode 64 hex characters, or standard / urlsafe base64 (padding optional).

    Returns the bytes only when they are exactly 32 long, else None.
    """
    text = text.strip()
    if len(text) == 2 * KEY_BYTES and set(text) <= _HEX_DIGITS:
        return bytes.fromhex(text)
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    return None


def load_master_key(home: Path, env_value: str | None) -> MasterKey:
    """The master key from `env_value` (DOCINGEST_MASTER_KEY) or from `home/master.key`.

    Raises ValueError (naming the variable or the file and its mode, never key bytes) for
    a malformed environment value, a malformed key file, or a key file that group or
    others may access.
    """
    if env_value is not None:
        raw = decode_key_text(env_value)
        if raw is None:
            raise ValueError(_ENV_ERROR)
        return MasterKey(raw)
    path = home / KEY_FILE_NAME
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    return _create_key_file(path)


def load_previous_keys(home: Path, env_value: str | None, *, env_key: bool) -> list[MasterKey]:
    """Retired keys still accepted for reading: from `env_value`
    (DOCINGEST_MASTER_KEY_PREVIOUS) when the current key comes from the environment
    (`env_key`), else from `home/master.key.previous` (absent: none)."""
    if env_key:
        texts = [t for t in (env_value or "").split(",") if t.strip()]
        raws = [decode_key_text(t) for t in texts]
        if any(raw is None for raw in raws):
            raise ValueError(_PREVIOUS_ENV_ERROR)
        return [MasterKey(raw) for raw in raws if raw is not None]
    try:
        return _read_key_lines(home / PREVIOUS_FILE_NAME)
    except FileNotFoundError:
        return []


class KeyFiles:
    """The key files under `home` as a live source: `changed()` tells (by inode, size and
    mtime of both files) whether a rotation replaced them since the last `load()`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._seen: tuple[tuple[int, int, int] | None, ...] | None = None

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for name in (KEY_FILE_NAME, PREVIOUS_FILE_NAME):
            try:
                st = os.stat(self.home / name)
            except FileNotFoundError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def changed(self) -> bool:
        return self._stamp() != self._seen

    def load(self) -> tuple[MasterKey, list[MasterKey]]:
        """(current, previous keys) as on disk now."""
        stamp = self._stamp()
        current = _read_key_file(self.home / KEY_FILE_NAME)
        previous = load_previous_keys(self.home, None, env_key=False)
        self._seen = stamp
        return current, previous


def write_key_files(home: Path, current: MasterKey, previous: list[MasterKey]) -> None:
    """Replace the key files atomically: `previous` first, so that a process reading between
    the two steps still knows every key that wraps an object; then `current`."""
    if previous:
        _replace_file(home / PREVIOUS_FILE_NAME, "".join(k.to_text() + "\n" for k in previous))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(home / PREVIOUS_FILE_NAME)
    _replace_file(home / KEY_FILE_NAME, current.to_text() + "\n")
    fsync_dir(home)


def _replace_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_new_file(tmp, text.encode("ascii"))
    try:
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_key_lines(path: Path) -> list[MasterKey]:
    """Every key of a private key file holding one key a line."""
    lines = _read_private(path).decode("ascii", "replace").splitlines()
    raws = [decode_key_text(line) for line in lines if line.strip()]
    if any(raw is None for raw in raws):
        raise ValueError(f"{path} must hold one 32-byte key (base64 or hex) a line")
    return [MasterKey(raw) for raw in raws if raw is not None]


def _read_key_file(path: Path, *, wait_for_content: bool = False) -> MasterKey:
    """Read an existing key file, refusing loose permissions and anything but a regular file."""
    deadline = time.monotonic() + (_RACE_WAIT_S if wait_for_content else 0.0)
    while True:
        data = _read_private(path)
        try:
            raw = decode_key_text(data.decode("ascii"))
        except UnicodeDecodeError:
            raw = None
        if raw is not None:
            return MasterKey(raw)
        if time.monotonic() >= deadline:
            raise ValueError(f"{path} does not contain a 32-byte key (base64 or hex)")
        time.sleep(0.02)


def _read_private(path: Path) -> bytes:
    """The bytes (the first 64 KiB) of a regular file that group and others cannot access."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ValueError(
                f"{path} has mode {mode:#o}; a master key file must not be readable or "
                "writable by group or others (chmod 600)"
            )
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> MasterKey:
    """Create `path` with a fresh key, atomically; if another process wins, use its key.

    The key is written and fsynced to a private temporary file (O_CREAT|O_EXCL, 0600) and
    then published with link(2), which fails if `path` already exists, so no reader ever
    sees a half-written key file. Where hard links are unsupported, `path` itself is
    created with O_CREAT|O_EXCL and the loser waits briefly for the winner's content.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = MasterKey.generate()
    content = (key.to_text() + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_new_file(tmp, content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        return _create_key_file_in_place(path, content, key)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    log.info("generated a new master key file", extra={"key_id": key.key_id})
    return key


def _create_key_file_in_place(path: Path, content: bytes, key: MasterKey) -> MasterKey:
    try:
        _write_new_file(path, content)
    except FileExistsError:
        return _read_key_file(path, wait_for_content=True)
    fsync_dir(path.parent)
    log.info("generated a new master key file", extra={"key_id": key.key_id})
    return key


def _write_new_file(path: Path, content: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        write_all(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
