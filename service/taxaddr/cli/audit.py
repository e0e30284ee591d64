"""CLI: ``taxaddr audit``: checkpoints, full verification and proofs of the audit log."""

from __future__ import annotations

import json

import typer

from taxaddr.audit import service
from taxaddr.config import get_settings

audit_app = typer.Typer(help="The tamper-evident audit log (RFC 6962).", no_args_is_help=True)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Print the latest signed checkpoint (C2SP signed note); sign a new one if the log grew."""
    typer.echo(service.run_checkpoint(get_settings()), nl=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the whole log and check it against every signed checkpoint (exit 1 on mismatch)."""
    report = service.run_verify(get_settings())
    typer.echo(report.message)


@audit_app.command("prove")
def audit_prove(
    leaf: int = typer.Option(..., "--leaf", min=0, help="leaf index"),
    tree_size: int | None = typer.Option(
        None, "--tree-size", min=1, help="tree size (default: the latest checkpoint's)"
    ),
) -> None:
    """Print an RFC 6962 inclusion proof as JSON {leaf_index, tree_size, hashes}."""
    typer.echo(json.dumps(service.run_prove(get_settings(), leaf, tree_size)))


@audit_app.command("vkey")
def audit_vkey() -> None:
    """Print the checkpoint verifier key (name+hash+base64 public key) for third parties."""
    typer.echo(service.run_vkey(get_settings()))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
