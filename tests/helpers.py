"""Test helpers shared by integration tests: a runtime on a test database, uploads from files,
and row counts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from docingest import bootstrap
from docingest.bootstrap import Runtime
from docingest.clients.embedders import Embedded, HashEmbedder
from docingest.config import Settings
from docingest.domain.states import JobStatus
from docingest.security.bearer_tokens import mint_token
from docingest.store import documents, jobs, liveness
from docingest.store.db import DictConn
from docingest.store.records import Job
from docingest.testing.procs import free_port, wait_for

SERVER_START_S = 15.0

TABLES = (
    "documents",
    "upload_jobs",
    "document_chunk_buffer",
    "document_vector_buffer",
    "document_chunks",
)


def make_runtime(dsn: str, home: Path, **env: str) -> Runtime:
    settings = Settings.from_env(
        {"DOCINGEST_HOME": str(home), "DOCINGEST_DATABASE_URL": dsn, **env}
    )
    return bootstrap.runtime(settings)


async def file_chunks(path: Path, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


async def upload(conn: DictConn, rt: Runtime, user: UUID, path: Path) -> documents.UploadResult:
    return await documents.accept_upload(
        conn,
        rt.blobs,
        user_id=user,
        filename_of=lambda: path.name,
        chunks=file_chunks(path),
        max_bytes=rt.settings.max_upload_bytes,
        actor="test",
    )


def auth(rt: Runtime, user: UUID, *, admin: bool = False) -> dict[str, str]:
    """A bearer header for `user`, minted with the runtime's JWT secret."""
    return {"Authorization": f"Bearer {mint_token(rt.jwt_secret, user, admin=admin)}"}


@contextmanager
def login_role_dsns(dsn: str) -> Iterator[dict[str, str]]:
    """A LOGIN role per process, each a member of its group role (`docingest_api`,
    `docingest_worker`) as docs/security.md shows: {group: DSN logging in as that role}.
    The roles are dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    logins = {
        group: f"t_{group.removeprefix('docingest_')}_{suffix}"
        for group in ("docingest_api", "docingest_worker")
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        for group, login in logins.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(login), sql.Identifier(group)
                )
            )
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield {
            group: urlunsplit(parts._replace(netloc=f"{login}@{host}"))
            for group, login in logins.items()
        }
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for login in logins.values():
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def wait_past_restart_grace(dsn: str) -> None:
    """Dead-worker detection is off for `liveness.RESTART_GRACE_S` after the server started
    (the session's server may be that young when a test needing it runs first)."""

    def old_enough() -> bool:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT pg_postmaster_start_time() < now() - make_interval(secs => %s)",
                (liveness.RESTART_GRACE_S,),
            ).fetchone()
        return bool(row and row[0])

    wait_for(old_enough, liveness.RESTART_GRACE_S + 5, "server too young")


def counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM docingest.{t}").fetchone()[0] for t in TABLES
        }  # type: ignore[index]


class CountingEmbedder(HashEmbedder):
    """The real hash embedder, counting calls and inputs; optionally failing on chosen calls."""

    def __init__(
        self, dimensions: int, fail_on_calls: Sequence[int] = (), error: Exception | None = None
    ) -> None:
        super().__init__(dimensions)
        self.calls = 0
        self.inputs = 0
        self.fail_on_calls = set(fail_on_calls)
        self.error = error

    async def embed(self, texts: Sequence[str]) -> Embedded:
        self.calls += 1
        if self.calls in self.fail_on_calls and self.error is not None:
            raise self.error
        self.inputs += len(texts)
        return await super().embed(texts)


@asynccontextmanager
async def serving(app: FastAPI, http: type[asyncio.Protocol] | str = "auto") -> AsyncIterator[str]:
    """The app under uvicorn on a loopback port in this event loop; yields its base URL.
    `http`: uvicorn's HTTP protocol (a class, e.g. `docingest.api.server.protocol_for(...)`)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=http
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + SERVER_START_S
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def child_processes(parent: int) -> list[tuple[int, bytes]]:
    """(pid, command line) of each live child of process ``parent`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append((int(entry.name), cmdline))
    return found


async def claim_one(
    conn: DictConn, worker_id: str, lease_s: float, excluded: tuple[JobStatus, ...] = ()
) -> Job | None:
    """The next claimable job for `worker_id`: the worker's claim statement, asking for one."""
    found = await jobs.claim_many(conn, worker_id, lease_s, excluded, limit=1)
    return found[0] if found else None
