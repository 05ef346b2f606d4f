"""`docingest ingest PATH...`: the main job for one person, end to end, in one process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from docingest.bootstrap import Runtime
from docingest.cli.common import build_runtime, err_console, load_settings, local_user, run_async
from docingest.domain.errors import DocingestError
from docingest.domain.states import TERMINAL
from docingest.store import documents, jobs
from docingest.store.db import DictConn, open_pool
from docingest.worker.runner import run_worker

_READ_SIZE = 1 << 20
# `ingest` runs no API, so a remote parser's callbacks cannot reach this process: instead of
# waiting DOCINGEST_PARSE_CALLBACK_TIMEOUT_SECONDS for them, poll the parser this soon.
INGEST_CALLBACK_WAIT_S = 3.0


@dataclass
class Item:
    path: Path
    document_id: UUID | None = None
    job_id: UUID | None = None
    status: str = "pending"
    chunks: int = 0
    vectors: int = 0
    error: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "document_id": str(self.document_id) if self.document_id else None,
            "job_id": str(self.job_id) if self.job_id else None,
            "status": self.status,
            "chunks": self.chunks,
            "vectors": self.vectors,
            "error": self.error,
        }


def collect_pdfs(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() == ".pdf")
            )
        elif p.is_file():
            out.append(p)
        else:
            err_console.print(f"[red]no such file or folder:[/red] {p}")
            raise typer.Exit(2)
    return out


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, _READ_SIZE):
            yield chunk


async def _accept(
    rt: Runtime, pool: AsyncConnectionPool[DictConn], user: UUID, items: list[Item]
) -> None:
    """Store each file and queue its job, one after the other (the worker is already running
    and claims each job as it is queued). A refused file is recorded on its item."""
    async with pool.connection() as conn:
        for item in items:
            try:
                res = await documents.accept_upload(
                    conn,
                    rt.blobs,
                    user_id=user,
                    filename_of=lambda item=item: item.path.name,  # type: ignore[misc]
                    chunks=_read_file(item.path),
                    max_bytes=rt.settings.max_upload_bytes,
                    actor=f"cli:{user}",
                )
            except DocingestError as exc:
                item.status, item.error = (
                    "rejected",
                    {"code": exc.code.value, "message": exc.message},
                )
                continue
            item.document_id, item.job_id, item.status = (
                res.document_id,
                res.job_id,
                res.status.value,
            )


async def _ingest(
    rt: Runtime, user: UUID, items: list[Item], concurrency: int, show_progress: bool
) -> None:
    pool = await open_pool(rt.dsn, min_size=1, max_size=4, name="docingest-ingest")
    accepted = asyncio.Event()
    try:
        pending: list[Item] = []  # the accepted ones, once all are stored

        async def refresh() -> bool:
            async with pool.connection() as conn:
                for item in pending:
                    assert item.job_id is not None
                    job = await jobs.get(conn, item.job_id)
                    if job is None:
                        continue
                    item.status = job.status.value
                    item.error = (
                        {
                            "code": str(job.last_error.get("code")),
                            "message": str(job.last_error.get("message")),
                        }
                        if job.status.is_failed and job.last_error
                        else None
                    )
            return all(i.status in TERMINAL for i in pending)

        async def finished() -> bool:
            return accepted.is_set() and await refresh()

        # started first: its start-up (tokenizer, parse server, connections) overlaps the
        # files being stored, and the first document is parsed while the rest are stored
        worker = asyncio.create_task(
            run_worker(
                rt,
                concurrency=concurrency,
                until=finished,
                handle_signals=False,
                poll_interval_s=0.5,
                callback_wait_s=min(
                    INGEST_CALLBACK_WAIT_S, float(rt.settings.parse_callback_timeout_s)
                ),
            )
        )
        try:
            await _accept(rt, pool, user, items)
        except BaseException:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            raise
        pending.extend(i for i in items if i.job_id is not None)
        accepted.set()
        with Progress(
            TextColumn("[bold]ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not show_progress,
            transient=True,
        ) as progress:
            bar = progress.add_task("documents", total=len(pending))
            while not worker.done():
                await asyncio.wait({worker}, timeout=0.5)
                progress.update(bar, completed=sum(i.status in TERMINAL for i in pending))
        await worker
        await refresh()
        async with pool.connection() as conn:
            for item in pending:
                assert item.document_id is not None
                counts = await documents.chunk_count(conn, item.document_id)
                item.chunks, item.vectors = counts.get("chunks", 0), counts.get("vectors", 0)
    finally:
        await pool.close()
        await rt.embedder.aclose()


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDF files or folders of PDFs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    user: Annotated[
        str | None, typer.Option(help="Act as this user id (default: the local user).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Documents processed at once.")] = 2,
) -> None:
    """Ingest PDFs end to end (parse, chunk, embed, store), wait, and print a summary."""
    settings = load_settings(log_format="console", quiet=True)
    files = collect_pdfs(paths)
    rt = build_runtime(settings)
    user_id = local_user(settings, user)
    items = [Item(path=p) for p in files]
    run_async(_ingest(rt, user_id, items, concurrency, show_progress=not as_json))
    if as_json:
        typer.echo(json.dumps({"documents": [i.as_json() for i in items]}, indent=2))
    else:
        _print_table(items)
    raise typer.Exit(0 if all(i.status == "complete" for i in items) else 1)


def _print_table(items: list[Item]) -> None:
    table = Table(title="docingest: ingest summary")
    for col in ("file", "status", "chunks", "vectors", "document_id", "error"):
        table.add_column(col)
    for i in items:
        color = "green" if i.status == "complete" else "red"
        table.add_row(
            i.path.name,
            f"[{color}]{i.status}[/{color}]",
            str(i.chunks),
            str(i.vectors),
            str(i.document_id or "-"),
            f"{i.error['code']}: {i.error['message']}" if i.error else "",
        )
    Console().print(table)
    done = sum(i.status == "complete" for i in items)
    Console().print(f"{done} of {len(items)} documents complete")
