"""CLI: ``taxaddr order``: apply and list court orders (stays and lifts), write a stay's
signed impact list; ``issue`` signs one with a locally held issuer key (dev stand-in for
a court)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cases.order_issue import order_claims, sign_order
from taxaddr.cases.orders import apply_order, list_orders
from taxaddr.cli.days import day_option
from taxaddr.cli.report import Format, OutFile, ReportFormat
from taxaddr.db import write_transaction
from taxaddr.errors import UsageError
from taxaddr.reports import impact
from taxaddr.reports.signing import signature_path
from taxaddr.services import opened_services

order_app = typer.Typer(
    help="Court orders: stays of disclosures and their lifts.", no_args_is_help=True
)


_COMPACT = re.compile(r"[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def _token(value: str) -> str:
    """The JWS itself, ``-`` for stdin, or a file holding it."""
    if value == "-":
        return sys.stdin.read().strip()
    if _COMPACT.fullmatch(value.strip()):
        return value.strip()
    try:
        return Path(value).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise UsageError("JWS_OR_FILE is neither a compact JWS nor a readable file") from None


@order_app.command("apply")
def order_apply(
    jws_or_file: Annotated[
        str, typer.Argument(metavar="JWS_OR_FILE", help="The order (JWS, file or -).")
    ],
) -> None:
    """Verify and apply a court order (a leaf); print the contract's answer as JSON."""
    token = _token(jws_or_file)
    with opened_services() as services, write_transaction(services.engine) as session:
        applied = apply_order(session, token, settings=services.settings, actor=cli_actor())
    typer.echo(json.dumps(applied.as_dict(), indent=2))


@order_app.command("list")
def order_list() -> None:
    """Every applied order: jti, kind, number, court, nbf, exp, in force yes/no."""
    with opened_services() as services, Session(services.engine) as session:
        rows = list_orders(session)
    typer.echo("jti\tkind\tnumber\tcourt\tnbf\texp\tin_force")
    for r in rows:
        exp = "-" if r["exp"] is None else str(r["exp"])
        in_force = "yes" if r["in_force"] else "no"
        typer.echo(
            f"{r['jti']}\t{r['kind']}\t{r['number']}\t{r['court']}\t{r['nbf']}\t{exp}\t{in_force}"
        )


@order_app.command("impact")
def order_impact(
    jti: Annotated[str, typer.Argument(metavar="JTI", help="The applied stay's jti.")],
    out: OutFile,
    since: Annotated[
        str | None, typer.Option("--since", help="first UTC day, YYYY-MM-DD (default: all)")
    ] = None,
    fmt: Format = ReportFormat.json,
) -> None:
    """Write the signed recall list: disclosures inside the stay's scope made before it
    took effect (FILE and FILE.sig; `taxaddr report verify FILE` checks it)."""
    since_day = None if since is None else day_option(since, "--since")
    with opened_services() as s:
        listing = impact.write_impact(
            s.engine, s.keystore, s.settings, jti=jti, since=since_day, fmt=fmt.value, out=out
        )
    typer.echo(
        f"wrote {out} and {signature_path(out)}: {len(listing['disclosures'])} disclosure(s) "
        f"inside the stay's scope, checkpoint tree size {listing['checkpoint']['tree_size']}"
    )


@order_app.command("issue")
def order_issue(  # noqa: PLR0917 - one parameter per flag
    issuer: Annotated[str, typer.Option("--issuer", help="Issuer id with a local key.")],
    kind: Annotated[str, typer.Option("--kind", help="stay or lift.")],
    number: Annotated[str, typer.Option("--number", help="The order's number.")],
    court: Annotated[str, typer.Option("--court", help="The court.")],
    lifts: Annotated[str | None, typer.Option("--lifts", help="jti of the stay (lift).")] = None,
    agency: Annotated[
        list[str] | None, typer.Option("--agency", help="Scope (repeatable).")
    ] = None,
    statute: Annotated[list[str] | None, typer.Option("--statute", help="Scope.")] = None,
    case_number: Annotated[list[str] | None, typer.Option("--case-number", help="Scope.")] = None,
    requester: Annotated[list[str] | None, typer.Option("--requester", help="Scope.")] = None,
    valid_days: Annotated[
        int | None, typer.Option("--valid-days", help="exp, days from now.")
    ] = None,
) -> None:
    """Sign a court order with a locally held issuer key; print only the compact JWS."""
    scope = {
        "agencies": agency or [],
        "statutes": statute or [],
        "case_numbers": case_number or [],
        "requesters": requester or [],
    }
    claims = order_claims(
        issuer=issuer,
        kind=kind,
        number=number,
        court=court,
        scope=scope,
        lifts=lifts,
        valid_days=valid_days,
    )
    with opened_services() as services:
        typer.echo(sign_order(services.keystore, services.settings.keys_dir, claims))


def register(app: typer.Typer) -> None:
    app.add_typer(order_app, name="order")
