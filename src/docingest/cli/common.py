"""Shared CLI plumbing: settings with one-line errors, the local user id, event loops."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from docingest import bootstrap
from docingest.bootstrap import Runtime
from docingest.config import ConfigError, Settings
from docingest.logs import configure_logging
from docingest.store.db import DictConn, open_pool
from docingest.store.vacuum import vacuum

err_console = Console(stderr=True)
T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on uvloop where it is installed (Linux and macOS), else on
    asyncio's own loop. uvloop spends less CPU per callback and socket event: the workers of
    validate's 8-worker point used about a tenth less CPU on it (docs/decisions.md)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # Windows: uvloop has no build there
        return None
    return uvloop.new_event_loop


async def then_vacuum(
    dsn: str, name: str, work: Callable[[DictConn], Awaitable[T]], tables: tuple[str, ...]
) -> T:
    """Run `work` on one connection, then VACUUM `tables` (none: skip) outside it."""
    pool = await open_pool(dsn, max_size=1, name=name)
    try:
        async with pool.connection() as conn:
            result = await work(conn)
    finally:
        await pool.close()
    if tables:
        await vacuum(dsn, tables)
    return result


@contextmanager
def config_errors_exit() -> Iterator[None]:
    """A ConfigError becomes one clear line on stderr and exit status 2."""
    try:
        yield
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)


def fail(message: str, code: int) -> NoReturn:
    """Exit with `message` as exactly one stderr line (never wrapped, never read as markup),
    so a supervisor's log shows the whole reason on one line."""
    err_console.print(message, style="red", soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(code)


def load_settings(*, log_format: str | None = None, quiet: bool = False) -> Settings:
    """Settings from the environment; a bad setting exits with one clear line."""
    with config_errors_exit():
        settings = Settings.from_env()
    import logging

    configure_logging(log_format or settings.log_format, logging.WARNING if quiet else logging.INFO)
    return settings


def build_runtime(settings: Settings, *, migrate_schema: bool = True) -> Runtime:
    """The composition root's parts (starting the embedded database when no URL is set)."""
    with config_errors_exit():
        return bootstrap.runtime(settings, migrate_schema=migrate_schema)


def local_user(settings: Settings, explicit: str | None) -> uuid.UUID:
    """`--user`, else a stable id kept under DOCINGEST_HOME so ingest and search agree."""
    if explicit:
        try:
            return uuid.UUID(explicit)
        except ValueError:
            err_console.print("[red]--user must be a UUID[/red]")
            raise typer.Exit(2) from None
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path: Path = settings.home / "user.id"
    if path.exists():
        return uuid.UUID(path.read_text(encoding="ascii").strip())
    user = uuid.uuid4()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"{user}\n")
    return user
