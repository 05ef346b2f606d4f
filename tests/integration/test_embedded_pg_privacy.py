"""The embedded server keeps its files and its socket away from other local users.

Under root the wheel runs PostgreSQL as its own user and opens every directory above its
data to group and others (read + traverse); the server needs only to traverse them, so
docingest takes the read bits back (`store/embedded_pg._traverse_only`). As another user the
wheel changes nothing, and the same assertions hold. A data directory too deep for its own
socket is refused: the wheel would put the socket in a shared temporary directory, and the
embedded server trusts every local connection.
"""

from __future__ import annotations

import stat
from pathlib import Path

import psutil
import psycopg
import pytest

from docingest.config import ConfigError
from docingest.store import embedded_pg

READ_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


def test_a_private_folder_above_the_home_stays_unlistable(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    home = private / "home"
    home.mkdir(mode=0o700)
    server = embedded_pg.server_at(home / "pg", cleanup_mode="delete")
    try:
        for directory in (private, home):
            assert stat.S_IMODE(directory.stat().st_mode) & READ_BY_OTHERS == 0, directory
        # the server still reaches its files: a checkpoint writes its control file
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        embedded_pg.restart_immediate(server)
        assert stat.S_IMODE(private.stat().st_mode) & READ_BY_OTHERS == 0
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.cleanup()


def test_a_new_home_is_private_to_its_owner(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    uri = embedded_pg.start_embedded(home)
    try:
        # 0700, or 0711 under root: the server's own user may pass through, nobody may list
        assert stat.S_IMODE(home.stat().st_mode) & ~(stat.S_IXGRP | stat.S_IXOTH) == 0o700
        with psycopg.connect(uri, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        embedded_pg.server_at(home / "pg").cleanup()


def test_a_data_directory_too_deep_for_its_own_socket_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    pgdata = deep / "pg"
    with pytest.raises(ConfigError, match="too long for the embedded server's socket"):
        embedded_pg.server_at(pgdata, cleanup_mode="delete")
    assert not pgdata.exists()  # refused before the wheel made or started anything
    running = [p.info["cmdline"] or [] for p in psutil.process_iter(["cmdline"])]
    assert not any(str(pgdata) in " ".join(cmd) for cmd in running)
