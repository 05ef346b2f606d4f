"""`docingest validate [--quick] [--out DIR]`: the Phase 4 validation suite (DESIGN.md §9)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from docingest.cli.common import err_console
from docingest.ops.validation.plan import FULL, QUICK


def validate(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="The CI-sized run: fewer documents, kills, restarts and a shorter outage; the"
            " same production settings.",
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", help="Where report.md, report.json and plots go.")
    ] = Path("validation-report"),
    corpus: Annotated[
        Path,
        typer.Option(
            envvar="DOCINGEST_CORPUS", help="The shared corpus (MANIFEST.tsv, real/, hostile/)."
        ),
    ] = Path("../shared/corpus"),
) -> None:
    """Start a fresh stack at the production defaults with faults, push the corpus through,
    measure, write the report (every target with the settings it ran under).

    Exit 0 only when every target holds.
    """
    if not (corpus / "MANIFEST.tsv").is_file():
        err_console.print(f"[red]corpus not found:[/red] {corpus}/MANIFEST.tsv (set --corpus)")
        raise typer.Exit(2)
    os.environ.setdefault(
        "XDG_RUNTIME_DIR", "/tmp"
    )  # the embedded server's runtime dir on bare machines
    from docingest.ops.validation import runner  # starts nothing until called

    plan = QUICK if quick else FULL
    command = "docingest " + shlex.join(sys.argv[1:])
    result, verdicts = runner.run(
        plan, out, corpus, command=command, progress=lambda msg: err_console.print(f"- {msg}")
    )
    table = Table("target", "measured", "", "kind")
    for v in verdicts:
        table.add_row(v.target, v.measured, "pass" if v.passed else "[red]FAIL[/red]", v.kind)
    err_console.print(table)
    err_console.print(f"report: {out / 'report.md'} ({result['meta']['duration_s']} s)")
    raise typer.Exit(0 if all(v.passed for v in verdicts) else 1)
