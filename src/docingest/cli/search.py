"""`docingest search QUERY [-k N] [--mode hybrid|vector|text] [--json]`: the local user's best
chunks, each with the file, pages and heading it comes from (store/search.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from docingest.cli.common import build_runtime, load_settings, local_user, run_async
from docingest.store.db import open_pool
from docingest.store.search import SearchMode, search
from docingest.store.vector_search import Strategy

SNIPPET_CHARS = 160


def _pages(pages: list[int] | None) -> str:
    if not pages:
        return "-"
    first, last = pages
    return str(first) if first == last else f"{first}-{last}"


def _table(results: list[dict[str, Any]], k: int, mode: SearchMode) -> Table:
    table = Table(title=f"top {k} for the query ({mode.value})")
    for column in ("score", "file", "page", "heading", "text"):
        table.add_column(column)
    for r in results:
        table.add_row(
            f"{r['score']:.3f}",
            r["filename"],
            _pages(r["pages"]),
            " > ".join(r["heading_path"]) or "-",
            " ".join(r["text"].split())[:SNIPPET_CHARS],
        )
    return table


def search_cmd(
    query: Annotated[str, typer.Argument(help="What to look for, in your own words.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Results to return.")] = 5,
    mode: Annotated[
        SearchMode,
        typer.Option(help="hybrid: meaning and exact words fused; vector; text."),
    ] = SearchMode.HYBRID,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's search response.")
    ] = False,
    user: Annotated[
        str | None, typer.Option(help="Act as this user id (default: the local user).")
    ] = None,
) -> None:
    """Search the local user's documents: where each answer stands (file, page, heading)."""
    settings = load_settings(log_format="console", quiet=True)
    rt = build_runtime(settings)
    user_id = local_user(settings, user)

    async def run() -> list[dict[str, Any]]:
        e = rt.embedder
        pool = await open_pool(rt.dsn, max_size=2, name="docingest-search")
        try:
            vector = None if mode is SearchMode.TEXT else (await e.embed([query])).vectors[0]
            async with pool.connection() as conn:
                return await search(
                    conn,
                    user_id,
                    query=query,
                    query_vector=vector,
                    model=e.model,
                    version=e.version,
                    k=k,
                    mode=mode,
                    strategy=Strategy(settings.vector_search),
                )
        finally:
            await pool.close()
            await e.aclose()

    results = run_async(run())
    if as_json:
        typer.echo(json.dumps({"results": results}, indent=2))
        return
    Console().print(_table(results, k, mode))
