"""The embedded default database: PostgreSQL 16 + pgvector from the `pgserver` wheel.

Started (and stopped at exit of the last process holding it) by docingest itself under
`$DOCINGEST_HOME/pg`. Child processes started by `docingest up` receive the resulting URL in
`DOCINGEST_DATABASE_URL` and never manage the server themselves.
"""

from __future__ import annotations

import logging
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
