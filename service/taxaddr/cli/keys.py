"""CLI: ``taxaddr keys``: create and rotate key material."""

from __future__ import annotations

import typer

from taxaddr.config import get_settings
from taxaddr.crypto.keystore import init_dev_keys

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


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
