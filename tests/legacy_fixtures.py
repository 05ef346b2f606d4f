"""Fixture for migration tests: a 001 database beside the docingest one on the test server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from docingest.testing.legacy001 import allow_broken_rows, load_schema
from tests.conftest import REPO

SCHEMA_SQL = REPO.parent / "shared" / "legacy-001" / "schema.sql"


@pytest.fixture
def legacy_dsn(pg_server: Any) -> Iterator[str]:
    """A second database on the same server holding the 001 schema (constraints relaxed so
    that broken rows can be written)."""
    name = f"legacy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn: str = pg_server.get_uri(name)
    load_schema(dsn, SCHEMA_SQL)
    allow_broken_rows(dsn)
    yield dsn
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
