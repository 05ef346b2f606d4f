"""Shared benchmark plumbing: a throwaway embedded Postgres and docingest home."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DOCINGEST_CORPUS", REPO.parent / "shared" / "corpus"))


@contextmanager
def scratch_database() -> Iterator[tuple[str, Path]]:
    """(dsn, home) on a fresh embedded server; both removed afterwards (home holds the run's
    encrypted blobs and its keys)."""
    from docingest.store import migrate
    from docingest.store.embedded_pg import server_at

    root = Path(tempfile.mkdtemp(prefix="docingest-bench-"))
    server = server_at(root / "pg", cleanup_mode="delete")
    try:
        dsn: str = server.get_uri()
        migrate.upgrade(dsn)
        yield dsn, root / "home"
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
