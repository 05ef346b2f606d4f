"""`docingest migrate-001 [rollback]` and `docingest compare-001` (docs/migration-001.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from docingest import bootstrap
from docingest.cli.common import err_console, load_settings, run_async
from docingest.clients.local_parser import LocalParser
from docingest.config import ConfigError
from docingest.domain import legacy_001 as mapping
from docingest.ops import compare_001, migrate_001, rollback

migrate_app = typer.Typer(
    help="Migrate a 001 database into docingest (MAPPING.md); `rollback` undoes one batch.",
    invoke_without_command=True,
)

FromOpt = Annotated[str, typer.Option("--from", help="DSN of the 001 database (opened read-only).")]
SchemaOpt = Annotated[str, typer.Option(help="Schema of the 001 tables.")]
BlobsOpt = Annotated[
    Path | None,
    typer.Option(
        "--blobs-from",
        help="Export of the 001 storage buckets (raw/..., parsed/...).",
        exists=True,
        file_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _runtime() -> bootstrap.Runtime:
    settings = load_settings(log_format="console", quiet=True)
    try:
        return bootstrap.runtime(settings)
    except ConfigError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@migrate_app.callback()
def migrate_cmd(
    ctx: typer.Context,
    source: FromOpt = "",
    schema: SchemaOpt = "upload_pipeline",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute, write nothing.")] = False,
    as_json: JsonOpt = False,
    blobs_from: BlobsOpt = None,
    embed_version_map: Annotated[
        list[str] | None,
        typer.Option(
            "--embed-version-map",
            help="OLD=NEW: carry 001 vectors of embed_version OLD as NEW (e.g. 1=d1536 for"
            " docingest's OpenAI embedder); repeatable.",
        ),
    ] = None,
) -> None:
    """Carry every 001 document, chunk and vector into docingest as one batch."""
    if ctx.invoked_subcommand is not None:
        return
    if not source:
        err_console.print("[red]--from DSN is required[/red]")
        raise typer.Exit(2)
    try:
        versions = mapping.version_map(embed_version_map or [])
    except ValueError as exc:
        err_console.print(f"[red]--embed-version-map: {exc}[/red]")
        raise typer.Exit(2) from None
    rt = _runtime()
    options = migrate_001.Options(
        schema=schema, dry_run=dry_run, blobs_from=blobs_from, embed_versions=versions
    )
    summary = run_async(migrate_001.migrate(source, rt.dsn, rt.blobs, options))
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
        return
    verb = "would write" if dry_run else ("wrote" if summary.committed else "nothing new to write")
    typer.echo(f"batch {summary.batch}: {summary.documents} documents, {summary.chunks} chunks")
    for status, n in sorted(summary.by_status.items()):
        typer.echo(f"  {status:<22} {n}")
    typer.echo(f"{verb}: " + ", ".join(f"{k} {v}" for k, v in summary.written.items()))
    kinds: dict[str, int] = {}
    for p in summary.problems:
        kinds[p.reason.split(":")[0]] = kinds.get(p.reason.split(":")[0], 0) + 1
    typer.echo(f"problems: {len(summary.problems)} " + json.dumps(kinds) + " (--json lists ids)")


@migrate_app.command("rollback")
def rollback_cmd(
    batch: Annotated[str, typer.Option("--batch", help="Batch id printed by migrate-001.")],
) -> None:
    """Remove exactly one migration batch (rows and the blobs it wrote)."""
    try:
        batch_id = UUID(batch)
    except ValueError:
        err_console.print("[red]--batch must be a UUID[/red]")
        raise typer.Exit(2) from None
    rt = _runtime()
    removed = run_async(rollback.rollback(rt.dsn, batch_id, rt.blobs))
    if not removed:
        err_console.print(f"[red]no migration batch {batch_id}[/red]")
        raise typer.Exit(1)
    typer.echo(f"rolled back {batch_id}: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


def compare_cmd(
    source: FromOpt,
    sample: Annotated[int, typer.Option("--sample", min=1, help="Documents to compare.")] = 20,
    schema: SchemaOpt = "upload_pipeline",
    blobs_from: BlobsOpt = None,
    min_cosine: Annotated[
        float, typer.Option(help="Lowest per-chunk cosine similarity that passes.")
    ] = compare_001.DEFAULT_MIN_COSINE,
    as_json: JsonOpt = False,
) -> None:
    """Re-process a sample of 001 documents in memory and compare with what 001 stored.
    Exit 0 when every document passes, 1 otherwise."""
    rt = _runtime()
    parser = bootstrap.parser(rt.settings)
    if not isinstance(parser, LocalParser):
        err_console.print("[red]compare-001 re-parses in process: use DOCINGEST_PARSER=local[/red]")
        raise typer.Exit(2)
    results = run_async(
        compare_001.compare(
            source,
            rt.dsn,
            blobs=rt.blobs,
            parser=parser,
            embedder=rt.embedder,
            sample=sample,
            schema=schema,
            blobs_from=blobs_from,
            min_cosine=min_cosine,
        )
    )
    if as_json:
        typer.echo(json.dumps({"documents": [r.to_json() for r in results]}))
    else:
        for r in results:
            verdict = "PASS" if r.passed else "FAIL"
            typer.echo(f"{verdict} {r.document_id} chunks {r.chunks_001}/{r.chunks_002}")
            for reason in r.reasons:
                typer.echo(f"     {reason}")
    if not all(r.passed for r in results):
        raise typer.Exit(1)
