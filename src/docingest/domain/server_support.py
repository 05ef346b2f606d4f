"""Which PostgreSQL and pgvector docingest runs on: PostgreSQL >= 14 with pgvector >= 0.7
(`halfvec`, the stored vector type, arrived in pgvector 0.7). Pure: the caller reads the
versions from the server."""

from __future__ import annotations

MIN_POSTGRES_MAJOR = 14
MIN_PGVECTOR = (0, 7)
REQUIREMENT = "PostgreSQL >= 14 with pgvector >= 0.7"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def problem(server_version_num: int, installed: str | None, available: str | None) -> str | None:
    """Why this server cannot run docingest, in one line naming what to do; None when it can.
    `installed`: the vector extension's version in the database (None: not created yet);
    `available`: the version CREATE EXTENSION would install (None: not on the server)."""
    major = server_version_num // 10000
    if major < MIN_POSTGRES_MAJOR:
        return f"PostgreSQL {major} is too old: docingest needs {REQUIREMENT}"
    floor = ".".join(map(str, MIN_PGVECTOR))
    if installed is not None and _version(installed) < MIN_PGVECTOR:
        if available is not None and _version(available) >= MIN_PGVECTOR:
            return (
                f"pgvector {installed} is older than {floor}: run `ALTER EXTENSION vector UPDATE`"
                f" in this database as its owner (docingest needs {REQUIREMENT})"
            )
        return (
            f"pgvector {installed} is older than {floor}: install pgvector >= {floor} on the"
            f" server, then run `ALTER EXTENSION vector UPDATE` (docingest needs {REQUIREMENT})"
        )
    if installed is None and available is None:
        return f"pgvector is not installed on the server: docingest needs {REQUIREMENT}"
    if installed is None and available is not None and _version(available) < MIN_PGVECTOR:
        return (
            f"the server offers pgvector {available}, older than {floor}: install pgvector"
            f" >= {floor} (docingest needs {REQUIREMENT})"
        )
    return None
