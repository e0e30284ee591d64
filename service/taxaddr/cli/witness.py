"""CLI: ``taxaddr witness``: a C2SP tlog-witness an oversight body runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.audit.checkpoint import CheckpointError, Verifier, parse_vkey
from taxaddr.audit.cosignature import CosignerKey
from taxaddr.errors import UsageError
from taxaddr.witness.server import Witness, serve
from taxaddr.witness.state import WitnessState

witness_app = typer.Typer(
    help="A witness (C2SP tlog-witness) that cosigns the audit log's checkpoints.",
    no_args_is_help=True,
)


@witness_app.command("keygen")
def witness_keygen(
    name: Annotated[str, typer.Option("--name", help="the witness's name, e.g. tigta.gov/w1")],
    out: Annotated[Path, typer.Option("--out", help="directory for witness.key/witness.vkey")],
) -> None:
    """Make a cosigning key: DIR/witness.key (0600) and DIR/witness.vkey; print the vkey."""
    try:
        key = CosignerKey.generate(name)
    except CheckpointError as exc:
        raise UsageError(exc.message) from None
    out.mkdir(parents=True, exist_ok=True)
    private = out / "witness.key"
    if private.exists():
        raise UsageError(f"{private} exists; refusing to overwrite a witness key")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.private_text())
    vkey = key.cosigner.vkey()
    (out / "witness.vkey").write_text(vkey + "\n")
    typer.echo(vkey)


@witness_app.command("serve")
def witness_serve(  # noqa: PLR0917 - one parameter per CLI option
    key: Annotated[Path, typer.Option("--key", help="the witness.key file")],
    log_vkey: Annotated[
        list[str], typer.Option("--log-vkey", help="a log's verifier key (repeatable)")
    ],
    state: Annotated[Path, typer.Option("--state", help="the witness's state file")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535)],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key")] = None,
    client_ca: Annotated[
        Path | None, typer.Option("--client-ca", help="require client certificates (mTLS)")
    ] = None,
) -> None:
    """Serve POST /add-checkpoint for the given logs until interrupted."""
    try:
        cosigner = CosignerKey.from_private_text(key.read_text())
    except OSError:
        raise UsageError(f"cannot read witness key {key}") from None
    except CheckpointError as exc:
        raise UsageError(exc.message) from None
    logs: dict[str, list[Verifier]] = {}
    for text in log_vkey:
        try:
            verifier = parse_vkey(text)
        except CheckpointError as exc:
            raise UsageError(f"--log-vkey: {exc.message}") from None
        logs.setdefault(verifier.name, []).append(verifier)
    witness = Witness(cosigner, logs, WitnessState(state))
    typer.echo(f"witness {cosigner.name} on {host}:{port} for {', '.join(sorted(logs))}", err=True)
    serve(witness, host, port, cert=tls_cert, key=tls_key, client_ca=client_ca)


def register(app: typer.Typer) -> None:
    app.add_typer(witness_app, name="witness")
