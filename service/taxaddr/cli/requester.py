"""CLI: ``taxaddr requester``: register and revoke client identities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taxaddr.audit.admin import cli_actor
from taxaddr.disclosure.requesters import register_requester, revoke
from taxaddr.services import opened_services
from taxaddr.trust.changes import PRIVILEGED_ROLES, refuse_on_cli

requester_app = typer.Typer(
    help="Register and revoke client identities (mTLS certificates).", no_args_is_help=True
)


@requester_app.command("add")
def requester_add(
    requester_id: Annotated[str, typer.Option("--id", help="requester id, e.g. hsi-agent-0042")],
    agency: Annotated[str, typer.Option("--agency", help="agency, e.g. ICE-HSI")],
    role: Annotated[str, typer.Option("--role", help="requester | oversight | monitor | admin")],
    cert: Annotated[Path | None, typer.Option("--cert", help="PEM certificate to register")] = None,
    issue_cert: Annotated[
        Path | None,
        typer.Option(
            "--issue-cert",
            help="dev only: issue a key + certificate from the dev client CA into this directory",
        ),
    ] = None,
) -> None:
    """Register a client identity (its certificate's SHA-256 fingerprint)."""
    with opened_services() as s:
        what = f"requester add with role {role}"
        refuse_on_cli(s.settings, dangerous=role in PRIVILEGED_ROLES, what=what)
        result = register_requester(
            s.settings,
            s.engine,
            s.keystore,
            requester_id=requester_id,
            agency=agency,
            role=role,
            cert_pem=cert,
            issue_cert_dir=issue_cert,
            actor=cli_actor(),
        )
    rec = result.record
    state = "already registered" if result.already_registered else "registered"
    typer.echo(f"{state}: {rec.id} agency={rec.agency} role={rec.role} sha256={rec.fingerprint}")
    for path in result.files:
        typer.echo(f"  {path}")


@requester_app.command("revoke")
def requester_revoke(
    requester_id: Annotated[str, typer.Argument(help="requester id to revoke")],
) -> None:
    """Revoke a client identity; its next request is refused."""
    with opened_services() as s:
        changed = revoke(s.engine, requester_id, actor=cli_actor())
    typer.echo(f"revoked: {requester_id}" if changed else f"already revoked: {requester_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(requester_app, name="requester")
