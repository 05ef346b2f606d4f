"""Is the database's storage encrypted at rest? What can honestly be checked (issue 11, item 7).

Chunk text, its full-text index, vectors and filenames live in Postgres in clear: search needs
to read them. Blobs are encrypted by us (AES-256-GCM); the database's files and WAL are
protected only by the storage's own encryption. docingest checks what it can see:

- **embedded database** (`$DOCINGEST_HOME/pg`): on Linux, the block device under the data
  directory is followed through device-mapper layers (LVM on LUKS included) until a dm-crypt
  target (`CRYPT-` in `/sys/class/block/<dev>/dm/uuid`) is found; an `ecryptfs` mount counts
  too. Anything else (plain disks, tmpfs, overlay, other systems) is "not shown encrypted".
- **configured database** (`DOCINGEST_DATABASE_URL`): a server elsewhere cannot be inspected;
  the operator declares it (`DOCINGEST_DB_ENCRYPTED_AT_REST=true`, e.g. RDS/Cloud SQL storage
  encryption, or a LUKS volume on the database host).

`DOCINGEST_DB_ENCRYPTION_POLICY=require` refuses to start unless one of the two holds;
`warn` (default, so a laptop demo runs) logs one line at start-up. Either way the answer is
exported as the gauge `docingest_database_encrypted_at_rest` (1/0).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

from docingest.config import ConfigError, Settings

log = logging.getLogger(__name__)

ENCRYPTED = Gauge(
    "docingest_database_encrypted_at_rest",
    "1 when the database's storage is shown (embedded) or declared (configured) encrypted",
)
_MAX_LAYERS = 8


@dataclass(frozen=True)
class AtRest:
    encrypted: bool
    how: str  # a short reason, no paths


def _mount_of(path: Path, mountinfo: str) -> tuple[str, str] | None:
    """(filesystem type, source device) of the mount holding `path`."""
    best: tuple[int, str, str] | None = None
    target = str(path)
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), tail[0], tail[1])
    return (best[1], best[2]) if best else None


def _dm_crypt_below(device: str, sys_block: Path) -> bool:
    """Whether `device` (e.g. /dev/mapper/x, /dev/dm-0) is, or sits on, a dm-crypt target."""
    try:
        name = Path(os.path.realpath(device)).name
    except OSError:
        return False
    pending: list[str] = [name]
    seen: set[str] = set()
    while pending and len(seen) < _MAX_LAYERS:
        current = pending.pop()
        seen.add(current)
        node = sys_block / current
        uuid_file = node / "dm" / "uuid"
        if uuid_file.exists() and uuid_file.read_text().startswith("CRYPT-"):
            return True
        slaves = node / "slaves"
        if slaves.is_dir():
            pending += [s.name for s in slaves.iterdir() if s.name not in seen]
    return False


def embedded_storage(
    data_dir: Path,
    *,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    sys_block: Path = Path("/sys/class/block"),
) -> AtRest:
    try:
        mount = _mount_of(data_dir.resolve(), mountinfo.read_text())
    except OSError:
        return AtRest(False, "mount table unavailable")
    if mount is None:
        return AtRest(False, "mount not found")
    fstype, source = mount
    if fstype == "ecryptfs":
        return AtRest(True, "ecryptfs mount")
    if source.startswith("/") and _dm_crypt_below(source, sys_block):
        return AtRest(True, "dm-crypt block device")
    return AtRest(False, f"{fstype} on an unencrypted or unknown device")


def check(settings: Settings) -> AtRest:
    if settings.database_url is not None:
        if settings.db_encrypted_at_rest:
            return AtRest(True, "declared by DOCINGEST_DB_ENCRYPTED_AT_REST")
        return AtRest(False, "configured database; DOCINGEST_DB_ENCRYPTED_AT_REST not set")
    return embedded_storage(settings.home / "pg")


def enforce(settings: Settings) -> AtRest:
    """Apply DOCINGEST_DB_ENCRYPTION_POLICY: ConfigError under `require` when not encrypted
    (start-up stops with one line); the answer otherwise, for `report` once serving."""
    state = check(settings)
    ENCRYPTED.set(1 if state.encrypted else 0)
    if not state.encrypted and settings.db_encryption_policy == "require":
        raise ConfigError(
            "DOCINGEST_DB_ENCRYPTION_POLICY=require: database storage is not shown encrypted"
            f" at rest ({state.how})"
        )
    return state


def report(state: AtRest) -> None:
    """One warning line when a service starts on storage not shown encrypted (policy warn)."""
    if not state.encrypted:
        log.warning(
            "database storage not shown encrypted at rest",
            extra={"action": "at_rest_unencrypted", "reason": state.how},
        )
