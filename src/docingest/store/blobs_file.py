"""The local-folder raw backend: each object is one file under `root` holding exactly its
bytes (`$DOCINGEST_HOME/blobs`).

Files are 0600 and directories this module creates are 0700. A write goes to a private
temporary file next to its destination and is published with link(2), which never
replaces an existing object; a rewrite replaces the file only if it is still the inode
that was read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from docingest.store.blob_format import KEY_RE, BlobIntegrityError, BlobNotFound
from docingest.store.fsutil import fsync_dir, write_all

_NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})


class FileObject:
    """An open object file (read with os.read on its descriptor)."""

    def __init__(self, key: str, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        info = os.fstat(self._fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self._fd)
            raise BlobNotFound(key)
        self.size = info.st_size
        self.version = str(info.st_ino)

    def read(self, n: int) -> bytes:
        return os.read(self._fd, n)

    def close(self) -> None:
        os.close(self._fd)


class FileWriter:
    """Bytes into a private temporary file next to the destination.

    All file operations hold `_lock`, so `abort()` (which may run on the event loop after
    a cancellation) waits for an in-flight worker-thread write instead of racing it.
    """

    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self.path = path
        make_private_dirs(path.parent)
        self.tmp = path.parent / f".tmp-{secrets.token_hex(12)}"
        self._lock = threading.Lock()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(self.tmp, flags, 0o600)
        os.fchmod(self._fd, 0o600)

    def write(self, blocks: Iterable[bytes | memoryview]) -> None:
        with self._lock:
            if self._fd is None:
                raise RuntimeError("writer is closed")
            for block in blocks:
                write_all(self._fd, block)

    def _finish(self) -> None:
        if self._fd is None:
            raise RuntimeError("writer is closed")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None

    def publish(self) -> bool:
        """link(2) fails if the destination exists: an object is never replaced."""
        with self._lock:
            self._finish()
            try:
                try:
                    os.link(self.tmp, self.path)
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in _NO_HARDLINK_ERRNOS:
                        raise
                    # No hard links on this filesystem: check-then-rename. Two puts racing
                    # on one key here can both "win"; keys are content-addressed, so the
                    # loser's object holds the same plaintext under a different data key.
                    if self.path.exists():
                        return False
                    os.replace(self.tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)
            fsync_dir(self.path.parent)
            return True

    def replace(self, version: str) -> None:
        with self._lock:
            self._finish()
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                raise BlobNotFound(self.key) from None
            if str(current.st_ino) != version:
                raise BlobIntegrityError(
                    self.key, "header", f"blob {self.key} changed during rewrap"
                )
            os.replace(self.tmp, self.path)
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


class FileBackend:
    """Objects as files under `root`: key `a/b/c` is the file `root/a/b/c`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        make_private_dirs(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def writer(self, key: str) -> FileWriter:
        return FileWriter(key, self._path(key))

    def open(self, key: str, *, first: int | None = None) -> FileObject:
        return FileObject(key, self._path(key))

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        fsync_dir(path.parent)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def iter_objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(self.root)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                key = (rel / name).as_posix()
                if key.startswith(prefix) and KEY_RE.fullmatch(key):
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        yield key, (Path(dirpath) / name).stat().st_mtime


def make_private_dirs(directory: Path) -> None:
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
