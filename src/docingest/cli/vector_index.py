"""`docingest vector-index build|drop|status`: the optional approximate index (schema owner)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from docingest import bootstrap
from docingest.cli.common import config_errors_exit, load_settings, run_async
from docingest.store import vector_index
from docingest.store.db import open_pool

vector_index_app = typer.Typer(
    help="The optional approximate (HNSW) index of the configured embedding model. Search is"
    " exact per user without it; with DOCINGEST_VECTOR_SEARCH=index it uses the index for the"
    " rows promoted before the index was built and ranks newer rows exactly.",
    no_args_is_help=True,
)


def _target() -> tuple[str, str, str, int]:
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        embedder = bootstrap.embedder(settings)
        dsn = bootstrap.database_url(settings)
    return dsn, embedder.model, embedder.version, embedder.dimensions


@vector_index_app.command("build")
def build_cmd(
    memory_mb: Annotated[
        int, typer.Option(min=64, help="maintenance_work_mem for the build (the HNSW graph).")
    ] = 1024,
    workers: Annotated[
        int, typer.Option(min=0, help="Parallel maintenance workers for the build.")
    ] = 2,
) -> None:
    """Build (or rebuild) the index over every row promoted so far, concurrently with reads
    and writes; rebuild later to take in newer rows."""
    dsn, model, version, dims = _target()
    started = time.perf_counter()
    built = vector_index.build(
        dsn, model, version, dims, maintenance_work_mem_mb=memory_mb, parallel_workers=workers
    )
    typer.echo(
        f"built {built.name} for {model}/{version} ({dims} dims) covering rows promoted until"
        f" {built.covers_until.isoformat()} in {time.perf_counter() - started:.1f} s"
    )


@vector_index_app.command("drop")
def drop_cmd() -> None:
    """Drop the index: search ranks exactly again."""
    dsn, model, version, _ = _target()
    dropped = vector_index.drop(dsn, model, version)
    typer.echo("dropped" if dropped else f"no index for {model}/{version}")


@vector_index_app.command("status")
def status_cmd() -> None:
    """The index of the configured model, as JSON (null when none is built)."""
    dsn, model, version, _ = _target()

    async def run() -> vector_index.VectorIndex | None:
        pool = await open_pool(dsn, max_size=1, name="docingest-index")
        async with pool, pool.connection() as conn:
            return await vector_index.current(conn, model, version)

    found = run_async(run())
    typer.echo(
        json.dumps(
            None
            if found is None
            else {
                "model": found.model,
                "version": found.version,
                "dimensions": found.dimensions,
                "index": found.name,
                "covers_until": found.covers_until.isoformat(),
            }
        )
    )
