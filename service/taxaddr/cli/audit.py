"""CLI: ``taxaddr audit``: checkpoints, full verification and proofs of the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.audit import service
from taxaddr.audit.admin import list_trust_changes
from taxaddr.audit.checkpoint import CheckpointError, parse_vkey
from taxaddr.audit.cosignature import parse_vkey as parse_cosigner_vkey
from taxaddr.audit.offline import verify_offline_proof
from taxaddr.audit.tiles import export_tiles
from taxaddr.cli.days import day_option
from taxaddr.errors import IntegrityError, UsageError
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


@audit_app.command("admin-log")
def audit_admin_log(
    from_: Annotated[
        str | None, typer.Option("--from", help="first UTC day, YYYY-MM-DD (inclusive)")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="last UTC day (inclusive)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """List the trust changes in the log: time, action, target and who made it."""
    since = None if from_ is None else day_option(from_, "--from")
    until = None if to is None else day_option(to, "--to")
    if since and until and until < since:
        raise UsageError("--to must not be before --from")
    with opened_services() as s:
        changes = list_trust_changes(s.engine, since, until)
    if as_json:
        for change in changes:
            typer.echo(json.dumps(change.as_dict(), sort_keys=True))
        return
    if not changes:
        typer.echo("no trust changes")
        return
    typer.echo("leaf\ttime\taction\ttarget\tby")
    for c in changes:
        by = f"{c.requester_id} ({c.role}, {c.agency})"
        typer.echo(f"{c.leaf_index}\t{c.time}\t{c.action}\t{c.target}\t{by}")


@audit_app.command("export-tiles")
def audit_export_tiles(
    out: Annotated[Path, typer.Option("--out", help="directory of the static mirror")],
) -> None:
    """Write the log as C2SP tlog-tiles (checkpoint, tiles, entry bundles) for a mirror."""
    with opened_services() as s:
        done = export_tiles(s.engine, s.keystore, s.settings, out)
    typer.echo(
        f"exported tree size {done.tree_size}: {done.tiles} tiles, {done.bundles} entry bundles"
    )


@audit_app.command("verify-proof")
def audit_verify_proof(
    proof_file: Annotated[Path, typer.Argument(help="an offline proof (JSON)")],
    log_vkey: Annotated[str, typer.Option("--log-vkey", help="the log's verifier key")],
    witness_vkey: Annotated[
        list[str] | None, typer.Option("--witness-vkey", help="a trusted witness (repeatable)")
    ] = None,
    quorum: Annotated[int, typer.Option("--quorum", min=0, help="witnesses required")] = 0,
) -> None:
    """Check an offline proof without the service: exit 0 only if the leaf is included
    under a checkpoint signed by the log and cosigned by QUORUM of the given witnesses."""
    try:
        log = parse_vkey(log_vkey)
        witnesses = [parse_cosigner_vkey(text) for text in witness_vkey or []]
    except CheckpointError as exc:
        raise UsageError(f"verifier key: {exc.message}") from None
    if quorum > len(witnesses):
        raise UsageError(f"--quorum {quorum} needs at least that many --witness-vkey")
    try:
        document = json.loads(proof_file.read_bytes())
    except OSError:
        raise UsageError(f"cannot read {proof_file}") from None
    except ValueError:
        raise IntegrityError("proof file: not JSON") from None
    check = verify_offline_proof(document, log, witnesses, quorum)
    by = f" and {len(check.witnesses)} witness(es): {', '.join(check.witnesses)}"
    typer.echo(
        f"ok: leaf {check.leaf_index} is included under the checkpoint of size "
        f"{check.tree_size} signed by the log{by if check.witnesses else ''}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
