"""The test session's PostgreSQL survives another pytest session started beside it.

Running one test file while the suite runs is ordinary; under root it used to kill the
suite's server: every new pytest session makes /tmp/pytest-of-<user> private again, and the
server (run as the wheel's own user) could no longer reach its data directory below it (see
`pytest_configure` in tests/conftest.py). The other session here is a plain one, outside this
repository and its conftest, as another project's would be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

OTHER_SESSION_TEST = """
def test_writes_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
"""


def test_another_pytest_session_leaves_this_sessions_database_running(
    pg_server: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other_project"
    other.mkdir()
    (other / "test_other.py").write_text(OTHER_SESSION_TEST)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(other)],
        cwd=other,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # a checkpoint writes the control file: it fails (and the server stops) if the server
    # can no longer reach its data directory
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
