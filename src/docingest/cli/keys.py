"""`docingest keys rotate|retire`: master-key rotation without downtime (ops/key_rotation.py)."""

from __future__ import annotations

import typer

from docingest import bootstrap
from docingest.cli.common import config_errors_exit, load_settings
from docingest.config import Settings, revealed
from docingest.ops.key_rotation import RewrapReport, retire_previous, rewrap_all, switch_key_files
from docingest.store.blobs import BlobStore
from docingest.store.keys import load_master_key

keys_app = typer.Typer(help="Blob encryption master keys.", no_args_is_help=True)


def _settings_and_store() -> tuple[Settings, BlobStore]:
    settings = load_settings(log_format="console", quiet=True)
    with config_errors_exit():
        return settings, bootstrap.blob_store(settings)


def _report(report: RewrapReport) -> None:
    typer.echo(
        f"{report.blobs} blobs wrapped with key id {report.key_id};"
        f" {report.rewrapped} re-wrapped now"
    )


@keys_app.command("rotate")
def rotate_cmd() -> None:
    """Switch to a new master key and re-wrap every blob's data key under it, online.

    With key files: a new `master.key`, the old key kept in `master.key.previous` for
    reading until `docingest keys retire`. With DOCINGEST_MASTER_KEY: re-wraps every blob
    under that key, unwrapping with DOCINGEST_MASTER_KEY_PREVIOUS (docs/security.md).
    """
    settings, store = _settings_and_store()
    if settings.master_key is None:
        old, new = switch_key_files(settings.home)
        typer.echo(f"new master key id {new.key_id}; old key id {old.key_id} kept for reading")
        _report(rewrap_all(store, new))
        typer.echo(
            "once every process started before now has finished its uploads, run"
            " `docingest keys retire` to drop the old key"
        )
        return
    _report(rewrap_all(store, load_master_key(settings.home, revealed(settings.master_key))))
    typer.echo(
        "every blob now opens with DOCINGEST_MASTER_KEY alone: remove the old key from"
        " DOCINGEST_MASTER_KEY_PREVIOUS and restart the processes"
    )


@keys_app.command("retire")
def retire_cmd() -> None:
    """Re-wrap any blob still under an old key file, then delete `master.key.previous`."""
    settings, store = _settings_and_store()
    if settings.master_key is not None:
        typer.echo(
            "DOCINGEST_MASTER_KEY is set: retire by removing DOCINGEST_MASTER_KEY_PREVIOUS",
            err=True,
        )
        raise typer.Exit(2)
    _report(retire_previous(settings.home, store))
    typer.echo("old master keys deleted; only the current key opens the blobs")
