"""CLI: ``taxaddr keys``: create and rotate key material."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from taxaddr.audit.admin import cli_actor
from taxaddr.config import get_settings
from taxaddr.crypto.keystore import init_dev_keys
from taxaddr.disclosure.published import public_keys
from taxaddr.services import opened_services
from taxaddr.store.rotation import DEFAULT_BATCH_SIZE, rotate_kek

keys_app = typer.Typer(help="Create and rotate key material.", no_args_is_help=True)


@keys_app.command("init")
def keys_init() -> None:
    """Create dev key material and dev CAs in TAXADDR_KEYS_DIR (never overwrites)."""
    settings = get_settings()
    created = init_dev_keys(settings.keys_dir)
    if created:
        typer.echo(f"created in {settings.keys_dir}: {', '.join(created)}")
    else:
        typer.echo(f"key material already present in {settings.keys_dir}; nothing changed")


@keys_app.command("rotate-kek")
def keys_rotate_kek(
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="data keys re-wrapped per transaction")
    ] = DEFAULT_BATCH_SIZE,
) -> None:
    """New KEK version; re-wrap every data key under it; retire KEKs no record uses.

    Resumable: records still on an old KEK after an interrupted run are re-wrapped
    by the next run. Ciphertexts are not touched.
    """
    with opened_services() as s:
        report = rotate_kek(s.engine, s.keystore, actor=cli_actor(), batch_size=batch_size)
    retired = ", ".join(f"v{v}" for v in report.retired) or "none"
    typer.echo(
        f"KEK v{report.new_version} is current; re-wrapped {report.rewrapped} data keys; "
        f"retired: {retired}"
    )
    if report.still_in_use:
        kept = ", ".join(f"v{v}" for v in report.still_in_use)
        typer.echo(f"still in use (run rotate-kek again): {kept}", err=True)
        raise typer.Exit(1)


@keys_app.command("public")
def keys_public() -> None:
    """Print the public keys third parties verify with (the same JSON as GET /v1/keys):
    the audit log's verifier key, the receipt JWK and the report public key (PEM)."""
    with opened_services() as s:
        typer.echo(json.dumps(public_keys(s.keystore, s.settings), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
