"""Blob objects in and out of a backup as they are stored: still encrypted, never
decrypted here (the master key is not part of a backup; see docs/backup.md).

Only the local-folder store is supported: its objects are plain files. An s3:// store is
refused with a clear message (use bucket versioning or replication for it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from docingest.ops.backup_manifest import file_digest
from docingest.ops.pg_tools import BackupError
from docingest.store.blobs import BlobStore, LocalBlobStore, validate_key

BLOBS_DIR = "blobs"


def local_root(store: BlobStore) -> Path:
    if isinstance(store, LocalBlobStore):
        return store.root
    raise BackupError(
        "docingest backup copies the local blob store only; for s3:// use bucket"
        " versioning or replication (docs/backup.md)"
    )


def _private_dirs(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def export_all(store: BlobStore, backup_dir: Path) -> list[str]:
    """Copy every stored object's file into `backup_dir/blobs/<key>`; the keys copied.
    An object deleted while we list is skipped (only blobs the dump references matter,
    and the caller checks those)."""
    root = local_root(store)
    copied: list[str] = []
    for key in store.iter_keys():
        dest = backup_dir / BLOBS_DIR / key
        _private_dirs(dest.parent)
        try:
            shutil.copyfile(root / key, dest)
        except FileNotFoundError:
            continue
        os.chmod(dest, 0o600)
        copied.append(key)
    return copied


def plan_import(store: BlobStore, wanted: Mapping[str, str]) -> list[str]:
    """Keys (with the sha256 of their stored file) still to copy into the store. A key
    already there must hold the very same bytes, else BackupError before anything is
    written."""
    root = local_root(store)
    todo: list[str] = []
    for key, sha in sorted(wanted.items()):
        target = root / validate_key(key)
        if not target.exists():
            todo.append(key)
        elif file_digest(target)[0] != sha:
            raise BackupError(f"blob {key} already exists in the blob store with other content")
    return todo


def import_file(store: BlobStore, key: str, source: Path) -> None:
    """Publish `source` as object `key`: a private temp file, fsync, then link(2), which
    never replaces an existing object."""
    target = local_root(store) / validate_key(key)
    _private_dirs(target.parent)
    tmp = target.parent / f".tmp-{secrets.token_hex(12)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
