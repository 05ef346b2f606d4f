"""The backup manifest: what a backup directory must hold, byte for byte.

`manifest.json` lists every other file of the backup with its sha256 and size, plus the
facts restore checks against (schema version, row counts per table). The manifest seals
itself: `manifest_sha256` is the sha256 of the canonical JSON of everything else, and the
file must be exactly the canonical rendering of what it parses to, so any changed byte in
it is caught. These are checksums against corruption and accidents, not a signature: keep
backups where only the operator can write (see docs/backup.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from docingest.ops.pg_tools import BackupError

MANIFEST = "manifest.json"
FORMAT = "docingest-backup/1"
_SEAL = "manifest_sha256"
_READ_CHUNK = 1 << 20


class BackupInvalid(BackupError):
    """A backup file is missing, extra or not what the manifest says."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, read in 1 MiB pieces."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(_READ_CHUNK):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _render(sealed: dict[str, Any]) -> bytes:
    return (json.dumps(sealed, sort_keys=True, indent=2) + "\n").encode("utf-8")


def write(directory: Path, body: dict[str, Any]) -> None:
    """Seal `body` (which must list the files) and write it as the directory's manifest."""
    sealed = {**body, "format": FORMAT}
    sealed[_SEAL] = hashlib.sha256(_canonical(sealed)).hexdigest()
    path = directory / MANIFEST
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_render(sealed))
        fh.flush()
        os.fsync(fh.fileno())


def _load(directory: Path) -> dict[str, Any]:
    try:
        raw = (directory / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise BackupInvalid(MANIFEST, "missing") from None
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BackupInvalid(MANIFEST, "not valid JSON") from None
    if not isinstance(parsed, dict) or raw != _render(parsed):
        raise BackupInvalid(MANIFEST, "altered (not in canonical form)")
    body = {k: v for k, v in parsed.items() if k != _SEAL}
    if parsed.get(_SEAL) != hashlib.sha256(_canonical(body)).hexdigest():
        raise BackupInvalid(MANIFEST, "altered (seal does not match)")
    if body.get("format") != FORMAT or not isinstance(body.get("files"), dict):
        raise BackupInvalid(MANIFEST, f"not a {FORMAT} manifest")
    return parsed


def _present_files(directory: Path) -> set[str]:
    return {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() or p.is_symlink()
    } - {MANIFEST}


def verify(directory: Path) -> dict[str, Any]:
    """The manifest, after checking it and every file it lists; BackupInvalid names the
    first file that is missing, unlisted, of the wrong size or of the wrong sha256."""
    manifest = _load(directory)
    files: dict[str, dict[str, Any]] = manifest["files"]
    present = _present_files(directory)
    extra = sorted(present - files.keys())
    if extra:
        raise BackupInvalid(extra[0], "not listed in the manifest")
    for name, want in sorted(files.items()):
        path = directory / name
        if name not in present or path.is_symlink():
            raise BackupInvalid(name, "missing")
        sha, size = file_digest(path)
        if size != want.get("size"):
            raise BackupInvalid(name, f"size {size}, manifest says {want.get('size')}")
        if sha != want.get("sha256"):
            raise BackupInvalid(name, "sha256 does not match the manifest")
    return manifest
