"""Which servers docingest accepts: PostgreSQL >= 14 with pgvector >= 0.7 (pure check)."""

from __future__ import annotations

from docingest.domain.server_support import problem


def test_supported_servers_pass() -> None:
    assert problem(140000, "0.7.0", "0.7.0") is None
    assert problem(180004, "0.8.5", "0.8.5") is None
    assert problem(160002, None, "0.8.0") is None  # created by the first migration


def test_old_postgres_is_refused() -> None:
    reason = problem(130010, "0.8.0", "0.8.0")
    assert reason is not None and "PostgreSQL 13" in reason and ">= 14" in reason


def test_old_pgvector_names_the_update_or_the_install() -> None:
    can_update = problem(160002, "0.6.2", "0.8.0")
    assert can_update is not None and "ALTER EXTENSION vector UPDATE" in can_update
    must_install = problem(160002, "0.6.2", "0.6.2")
    assert must_install is not None and "install pgvector >= 0.7" in must_install
    offered_old = problem(160002, None, "0.5.1")
    assert offered_old is not None and "offers pgvector 0.5.1" in offered_old
    missing = problem(160002, None, None)
    assert missing is not None and "not installed" in missing


def test_versions_compare_numerically_not_as_text() -> None:
    assert problem(160002, "0.10.0", "0.10.0") is None
    assert problem(160002, "0.6.10", "0.6.10") is not None
