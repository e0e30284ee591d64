"""CLI: ``taxaddr policy``: evaluate the disclosure policy, build an OPA bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.config import get_settings
from taxaddr.policy.service import build_bundle, evaluate_file

policy_app = typer.Typer(
    help="Evaluate the disclosure policy; build OPA bundles.", no_args_is_help=True
)


@policy_app.command("eval")
def policy_eval(
    input_file: Annotated[
        Path, typer.Option("--input", help="JSON input document (any JSON value).")
    ],
) -> None:
    """Evaluate the policy with the configured engine; print {allow, reasons} (exit 0 on deny)."""
    decision = evaluate_file(get_settings(), input_file)
    typer.echo(json.dumps(decision.as_json()))


@policy_app.command("bundle")
def policy_bundle(
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (tar.gz).")],
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            help="PEM private key (RSA >= 2048 bits: RS256; EC P-256: ES256) to sign the "
            "bundle with (.signatures.json, as OPA's bundle signing documents it).",
        ),
    ] = None,
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id", help="Key id OPA verifies the signature under (with --signing-key)."
        ),
    ] = None,
) -> None:
    """Build an OPA bundle (tar.gz with .manifest revision and roots) of the policy directory."""
    info = build_bundle(get_settings(), out, signing_key=signing_key, key_id=key_id)
    signed = f"; signed, key id {info.key_id}" if info.key_id else "; unsigned"
    typer.echo(
        f"wrote {info.path} (revision {info.revision}; roots {', '.join(info.roots)}{signed})"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(policy_app, name="policy")
