"""The master key that wraps every blob's data key (DESIGN.md §7, §8).

Source, in order: `DOCINGEST_MASTER_KEY` (32 bytes as base64, urlsafe base64 or 64 hex
characters), else `$DOCINGEST_HOME/master.key`, generated on first run (32 random bytes,
base64 text, mode 0600). The key never leaves this process in logs or exception messages;
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

__all__ = ["KEY_BYTES", "KEY_FILE_NAME", "MasterKey", "decode_key_text", "load_master_key"]

log = logging.getLogger(__name__)

KEY_BYTES = 32
KEY_FILE_NAME = "master.key"
_ENV_ERROR = "DOCINGEST_MASTER_KEY must be 32 bytes, base64 or hex"
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


def _read_key_file(path: Path, *, wait_for_content: bool = False) -> MasterKey:
    """Read an existing key file, refusing loose permissions and anything but a regular file."""
    deadline = time.monotonic() + (_RACE_WAIT_S if wait_for_content else 0.0)
    while True:
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
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            raw = decode_key_text(data.decode("ascii"))
        except UnicodeDecodeError:
            raw = None
        if raw is not None:
            return MasterKey(raw)
        if time.monotonic() >= deadline:
            raise ValueError(f"{path} does not contain a 32-byte key (base64 or hex)")
        time.sleep(0.02)


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
