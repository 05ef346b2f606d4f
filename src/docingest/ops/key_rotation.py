"""Master-key rotation without downtime (`docingest keys rotate|retire`, docs/security.md).

Key files (the embedded default, no DOCINGEST_MASTER_KEY): `rotate` moves the current key
to `master.key.previous` and writes a fresh `master.key` (store/keys.py, atomically, the
previous file first). Running API and worker processes follow the files (`KeyFiles`): their
next write uses the new key and a blob wrapped under a key they have not seen makes them
re-read the files, so reads never fail during a rotation. Then every blob's data key is
re-wrapped under the new key (frames are copied verbatim). A write that began before the
switch may still land under the old key; it stays readable through the previous file, and
`retire` re-wraps such stragglers and deletes the previous file.

Environment keys: processes cannot follow an environment change, so the operator rolls
the keys (docs/security.md); `rotate` then only re-wraps every blob under the current key,
unwrapping with DOCINGEST_MASTER_KEY_PREVIOUS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from docingest.store.blobs import BlobNotFound, BlobStore
from docingest.store.keys import MasterKey, load_master_key, load_previous_keys, write_key_files

log = logging.getLogger(__name__)

MAX_PASSES = 3


@dataclass(frozen=True)
class RewrapReport:
    key_id: str  # the master key every blob is now wrapped with
    blobs: int  # objects seen
    rewrapped: int  # objects whose data key was re-wrapped


def switch_key_files(home: Path) -> tuple[MasterKey, MasterKey]:
    """(old, new): a fresh current key; the old one joins the previous (read-only) keys."""
    old = load_master_key(home, None)
    previous = load_previous_keys(home, None, env_key=False)
    new = MasterKey.generate()
    kept = [k for k in previous if k.key_id != old.key_id]
    write_key_files(home, new, [*kept, old])
    log.info("master key files rotated", extra={"old_key_id": old.key_id, "new_key_id": new.key_id})
    return old, new


def rewrap_all(store: BlobStore, current: MasterKey) -> RewrapReport:
    """Re-wrap every blob not yet under `current`, pass after pass until a pass finds none
    (blobs written under an old key while the first pass ran are picked up by the next)."""
    seen: set[str] = set()
    rewrapped = 0
    for _ in range(MAX_PASSES):
        done_now = 0
        for key in store.iter_keys():
            seen.add(key)
            try:
                if store.key_id_of(key) != current.key_id:
                    store.rewrap(key, current)
                    done_now += 1
            except BlobNotFound:
                seen.discard(key)  # deleted meanwhile (DELETE, purge): nothing to keep
        rewrapped += done_now
        if done_now == 0:
            break
    log.info(
        "blobs re-wrapped",
        extra={"key_id": current.key_id, "blobs": len(seen), "rewrapped": rewrapped},
    )
    return RewrapReport(current.key_id, len(seen), rewrapped)


def retire_previous(home: Path, store: BlobStore) -> RewrapReport:
    """Re-wrap any straggler under the current key file's key, then delete the previous
    keys file: from now on only the current key opens the blobs."""
    current = load_master_key(home, None)
    report = rewrap_all(store, current)
    write_key_files(home, current, [])
    return report
