"""CLI: ``taxaddr audit``: checkpoints, full verification and proofs of the audit log."""

from __future__ import annotations

import json

import typer

from taxaddr.audit import service
from taxaddr.services import opened_services

audit_app = typer.Typer(help="The tamper-evident audit log (RFC 6962).", no_args_is_help=True)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Print the latest signed checkpoint (C2SP signed note); sign a new one if the log grew."""
    with opened_services() as s:
        note = service.checkpoint_note(s.engine, s.keystore, s.settings)
    typer.echo(note, nl=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the whole log and check it against every signed checkpoint (exit 1 on mismatch)."""
    with opened_services() as s:
        report = service.verify_audit_log(s.engine, s.keystore, s.settings)
    typer.echo(report.message)


@audit_app.command("prove")
def audit_prove(
    leaf: int = typer.Option(..., "--leaf", min=0, help="leaf index"),
    tree_size: int | None = typer.Option(
        None, "--tree-size", min=1, help="tree size (default: the latest checkpoint's)"
    ),
) -> None:
    """Print an RFC 6962 inclusion proof as JSON {leaf_index, tree_size, hashes}."""
    with opened_services() as s:
        proof = service.prove_leaf(s.engine, s.keystore, s.settings, leaf, tree_size)
    typer.echo(json.dumps(proof))


@audit_app.command("vkey")
def audit_vkey() -> None:
    """Print the checkpoint verifier key (name+hash+base64 public key) for third parties."""
    with opened_services() as s:
        typer.echo(service.verifier_key(s.keystore, s.settings))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
