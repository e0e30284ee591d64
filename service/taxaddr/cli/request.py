"""CLI: ``taxaddr request``: make one disclosure request over mTLS and print the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.api.client import build_request_body, send_disclosure_request


def request(
    *,
    cert: Annotated[Path, typer.Option("--cert", help="client certificate (PEM)")],
    key: Annotated[Path, typer.Option("--key", help="client private key (PEM)")],
    ca: Annotated[Path, typer.Option("--ca", help="CA that signed the server certificate")],
    url: Annotated[str, typer.Option("--url", help="base URL, e.g. https://127.0.0.1:8443")],
    case_ref: Annotated[str, typer.Option("--case-ref", help="case reference (compact JWS)")],
    tin: Annotated[str, typer.Option("--tin", help="taxpayer's SSN or ITIN")],
    name: Annotated[str, typer.Option("--name", help="taxpayer's name")],
    address: Annotated[
        str, typer.Option("--address", help='last known address: "street, city, ST zip"')
    ],
    tax_period: Annotated[
        list[str], typer.Option("--tax-period", help="tax period YYYY (repeatable)")
    ],
    statute: Annotated[str, typer.Option("--statute", help="e.g. 8 U.S.C. 1253(a)(1)")],
    reason: Annotated[str, typer.Option("--reason", help="why the address is relevant")],
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="request id, a UUID (default: a new one)")
    ] = None,
) -> None:
    """Make one disclosure request; print the JSON answer (exit 1 unless it is a 2xx)."""
    body = build_request_body(
        case_ref=case_ref,
        tin=tin,
        name=name,
        address=address,
        tax_periods=tax_period,
        statute=statute,
        reason=reason,
        request_id=request_id,
    )
    answer = send_disclosure_request(url=url, cert=cert, key=key, ca=ca, body=body)
    typer.echo(json.dumps(answer.body, indent=2, ensure_ascii=False))
    if not 200 <= answer.status < 300:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("request")(request)
