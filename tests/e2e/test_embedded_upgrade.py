"""Homes and servers older than docingest supports, made by the real older wheel.

The `pgserver` wheel (dev dependency) is what made embedded homes before: PostgreSQL 16.2 with
pgvector 0.6.2. A home it made is refused with one line naming the upgrade command, left
untouched, then upgraded by that command without losing a row; a production server with its
pgvector 0.6.2 is refused at start-up with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from docingest.store import migrate
from docingest.store.embedded_pg import UPGRADE_COMMAND
from tests.e2e.conftest import run_cli

# Runs in its own process: the old wheel registers its own at-exit clean-up.
_OLD_WHEEL = textwrap.dedent(
    """
    import sys, psycopg, pgserver
    server = pgserver.get_server(sys.argv[1], cleanup_mode=sys.argv[2] if sys.argv[2] != "none" else None)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "docingest"')
        conn.execute('CREATE DATABASE "bare"')
    with psycopg.connect(server.get_uri("docingest"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, v vector(3))")
        conn.execute("INSERT INTO sentinel VALUES (1, '[1,2,3]'), (2, '[4,5,6]')")
        print(conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0])
    print(server.get_uri("docingest"))
    print(server.get_uri("bare"))
    sys.stdout.flush()
    if sys.argv[2] == "none":
        sys.stdin.read()  # keep serving until the test closes our stdin
        server.cleanup_mode = "stop"  # then stop: no server outlives the test
        server.cleanup()
    """
)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINGEST_")}
    env.update(DOCINGEST_HOME=str(home), **extra)
    return env


def test_pg16_home_is_refused_then_upgraded_without_losing_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    made = subprocess.run(
        [sys.executable, "-c", _OLD_WHEEL, str(home / "pg"), "stop"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert made.stdout.splitlines()[0] == "0.6.2"
    assert (home / "pg" / "PG_VERSION").read_text().strip() == "16"

    refused = run_cli(_env(home), "db", "current", timeout=120)
    assert refused.returncode == 2, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and UPGRADE_COMMAND in lines[0] and "PostgreSQL 16" in lines[0]
    assert (home / "pg" / "PG_VERSION").read_text().strip() == "16"  # never opened by 18
    assert not (home / "pg.old").exists()

    upgraded = run_cli(_env(home), *UPGRADE_COMMAND.split()[1:], timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded" in upgraded.stdout
    assert (home / "pg" / "PG_VERSION").read_text().strip() == "18"
    assert (home / "pg.old" / "PG_VERSION").read_text().strip() == "16"  # kept, not lost

    migrated = run_cli(_env(home), "db", "upgrade", timeout=120)  # halfvec needs pgvector 0.7+
    assert migrated.returncode == 0, migrated.stderr
    assert f"current: {migrate.head()}" in migrated.stdout

    again = run_cli(_env(home), *UPGRADE_COMMAND.split()[1:], timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    from docingest.store.embedded_pg import server_at

    server = server_at(home / "pg")
    try:
        with psycopg.connect(server.get_uri("docingest")) as conn:
            assert conn.execute("SELECT id, v::text FROM sentinel ORDER BY id").fetchall() == [
                (1, "[1,2,3]"),
                (2, "[4,5,6]"),
            ]
            version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            assert version is not None and version[0] >= "0.8"
            assert conn.execute("SELECT to_regclass('docingest.document_chunks')").fetchone() != (
                None,
            )
    finally:
        server.cleanup()


def test_production_server_with_pgvector_older_than_0_7_is_refused_with_one_line(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _OLD_WHEEL, str(tmp_path / "pg16"), "none"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as old:
        assert old.stdout is not None and old.stdin is not None
        assert old.stdout.readline().strip() == "0.6.2"
        with_vector, bare = old.stdout.readline().strip(), old.stdout.readline().strip()
        try:
            for dsn, expected in (
                (with_vector, "pgvector 0.6.2 is older than 0.7"),
                (bare, "offers pgvector 0.6.2, older than 0.7"),
            ):
                result = run_cli(
                    _env(tmp_path / "home", DOCINGEST_DATABASE_URL=dsn), "db", "current"
                )
                assert result.returncode == 2, result.stderr
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                assert len(lines) == 1, result.stderr
                assert expected in lines[0] and "PostgreSQL >= 14 with pgvector >= 0.7" in lines[0]
            with psycopg.connect(bare) as conn:  # refused before any migration ran
                assert conn.execute("SELECT to_regnamespace('docingest')").fetchone() == (None,)
        finally:
            old.stdin.close()
            old.wait(timeout=60)
