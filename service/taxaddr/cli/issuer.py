"""CLI: ``taxaddr issuer``: the trusted case-reference issuers and their public keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers
from taxaddr.services import opened_services
from taxaddr.trust.changes import refuse_on_cli, remove_issuer_key_cli

issuer_app = typer.Typer(
    help="Trusted case-reference issuers (courts, prosecutor's offices) and their keys.",
    no_args_is_help=True,
)


@issuer_app.command("add")
def issuer_add(
    iss: Annotated[str, typer.Option("--id", help="Issuer id, as in the tokens' 'iss' claim.")],
    jwk: Annotated[
        Path, typer.Option("--jwk", help="RFC 7517 public JWK (OKP/Ed25519 or EC/P-256) with kid.")
    ],
    not_before: Annotated[
        str | None, typer.Option("--not-before", help="Key valid from (YYYY-MM-DD or ISO time).")
    ] = None,
    not_after: Annotated[
        str | None, typer.Option("--not-after", help="Key valid until (exclusive).")
    ] = None,
) -> None:
    """Trust a public key of an issuer (idempotent; a kid never names two keys)."""
    with opened_services() as s:
        refuse_on_cli(s.settings, dangerous=True, what="issuer add")
        result = issuers.add_from_file(s.engine, iss, jwk, not_before, not_after, actor=cli_actor())
    if result.created:
        verb = "added"
    elif result.retrusted:
        verb = "trusted again (it had been removed):"
    else:
        verb = "already trusted:"
    typer.echo(f"{verb} issuer {result.key.iss} key {result.key.kid} ({result.key.alg})")


@issuer_app.command("list")
def issuer_list() -> None:
    """List issuer keys with their validity windows and status."""
    with opened_services() as s:
        rows = issuers.list_issuer_keys(s.engine)
    if not rows:
        typer.echo("no trusted issuers")
        return
    typer.echo("issuer\tkid\talg\tnot_before\tnot_after\tstatus")
    for k in rows:
        status = "active" if k.active else "removed"
        nb = k.not_before.isoformat() if k.not_before else "-"
        na = k.not_after.isoformat() if k.not_after else "-"
        typer.echo(f"{k.iss}\t{k.kid}\t{k.alg}\t{nb}\t{na}\t{status}")


@issuer_app.command("remove")
def issuer_remove(
    iss: Annotated[str, typer.Option("--id", help="Issuer id.")],
    kid: Annotated[
        str | None, typer.Option("--kid", help="Remove only this key (default: the whole issuer).")
    ] = None,
) -> None:
    """Stop trusting an issuer, or one of its keys; effective on the next request."""
    with opened_services() as s:
        removed = remove_issuer_key_cli(s.engine, s.settings, iss, kid, actor=cli_actor())
    what = f"key {kid} of issuer {iss}" if kid else f"issuer {iss}"
    typer.echo(f"removed {what} ({removed} key(s) newly untrusted)")


def register(app: typer.Typer) -> None:
    app.add_typer(issuer_app, name="issuer")
