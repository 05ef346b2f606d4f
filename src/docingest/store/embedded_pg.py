"""The embedded default database: PostgreSQL 16 + pgvector from the `pgserver` wheel.

Started (and stopped at exit of the last process holding it) by docingest itself under
`$DOCINGEST_HOME/pg`. Child processes started by `docingest up` receive the resulting URL in
`DOCINGEST_DATABASE_URL` and never manage the server themselves.

`restart_immediate` is the fault the recovery test and `docingest validate` inject: a crash
(no checkpoint, every client connection cut), then crash recovery on the same socket, so the
URL clients hold stays valid.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import psycopg

DATABASE = "docingest"


def start_embedded(home: Path) -> str:
    """Start (or join) the embedded server and return a URL for the `docingest` database."""
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    from pgserver.postgres_server import get_server  # lazily: production never needs it

    home.mkdir(parents=True, exist_ok=True)
    server: Any = get_server(home / "pg", cleanup_mode="stop")
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
    """Stop a running pgserver server with `pg_ctl -m immediate` and start it again.

    `server` is a `pgserver.PostgresServer`. The restart goes through pgserver's own start
    path (`ensure_postgres_running`), which picks the same socket directory for the same data
    directory and refreshes the handle's postmaster info, so `server.get_uri()` and the URLs
    clients already hold keep working and the handle's cleanup stops the new postmaster.
    """
    from pgserver._commands import POSTGRES_BIN_PATH  # lazily: production never needs it

    stop = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-m", "immediate"]
    with server._lock:  # pgserver's inter-process lock, held by its own start/stop paths too
        subprocess.run(
            [*stop, "-w", "stop"],
            user=server.system_user,  # pgserver runs postgres as its own user under root
            check=True,
            capture_output=True,
            timeout=60,
        )
        server.ensure_postgres_running()
