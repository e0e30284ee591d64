"""CLI: ``taxaddr serve``: run the mTLS API."""

from __future__ import annotations

from typing import Annotated

import typer

from taxaddr.api.server import serve as run_server
from taxaddr.config import get_settings


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="listen address (default TAXADDR_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="listen port (default TAXADDR_PORT)")
    ] = None,
) -> None:
    """Run the mTLS API (client certificates required and verified against the client CA)."""
    settings = get_settings()
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    run_server(settings.model_copy(update=updates) if updates else settings)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
