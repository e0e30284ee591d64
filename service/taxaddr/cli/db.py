"""CLI: ``taxaddr db``: schema migrations."""

from __future__ import annotations

import typer

from taxaddr.config import get_settings
from taxaddr.migrate import upgrade

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to TAXADDR_DATABASE_URL."""
    settings = get_settings()
    upgrade(settings.database_url)
    typer.echo("database schema is up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
