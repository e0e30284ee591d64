"""CLI: ``taxaddr case``: issue (dev stand-in for a court), inspect and revoke case references."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issue
from taxaddr.services import opened_services

case_app = typer.Typer(help="Signed criminal-case references.", no_args_is_help=True)


@case_app.command("issue")
def case_issue(  # noqa: PLR0917 - one parameter per contract flag
    issuer: Annotated[str, typer.Option("--issuer", help="Issuer id with a local key.")],
    case_number: Annotated[str, typer.Option("--case-number", help="Court case number.")],
    court: Annotated[str, typer.Option("--court", help="Court.")],
    proceeding: Annotated[
        str, typer.Option("--proceeding", help="Kind of proceeding (e.g. criminal).")
    ],
    statute: Annotated[list[str], typer.Option("--statute", help="Statute (repeatable).")],
    agency: Annotated[str, typer.Option("--agency", help="Agency allowed to request.")],
    requester: Annotated[list[str], typer.Option("--requester", help="Requester id (repeatable).")],
    subject: Annotated[list[str], typer.Option("--subject", help="Subject TIN (repeatable).")],
    tax_period: Annotated[list[str], typer.Option("--tax-period", help="YYYY (repeatable).")],
    max_disclosures: Annotated[
        int, typer.Option("--max-disclosures", help="Disclosure quota of the case reference.")
    ],
    valid_days: Annotated[int, typer.Option("--valid-days", help="Validity from now, in days.")],
) -> None:
    """Sign a case reference with a locally held issuer key; print only the compact JWS."""
    spec = issue.CaseSpec(
        issuer=issuer,
        number=case_number,
        court=court,
        proceeding=proceeding,
        statutes=statute,
        agency=agency,
        requesters=requester,
        subjects=subject,
        tax_periods=tax_period,
        max_disclosures=max_disclosures,
        valid_days=valid_days,
    )
    with opened_services() as services:
        keys_dir = services.settings.keys_dir
        typer.echo(issue.sign_case_reference(services.keystore, keys_dir, spec))


@case_app.command("revoke")
def case_revoke(jti: Annotated[str, typer.Argument(help="The case reference's jti.")]) -> None:
    """Revoke a case reference; refused from the next request on."""
    with opened_services() as services:
        newly = issue.revoke_case(services.engine, jti, actor=cli_actor())
    if newly:
        typer.echo(f"revoked case reference {jti}")
    else:
        typer.echo(f"case reference {jti} was already revoked")


@case_app.command("inspect")
def case_inspect(
    token: Annotated[str, typer.Argument(help="The compact JWS, or - to read it from stdin.")],
) -> None:
    """Verify a case reference as the service would; print its claims (subjects as pseudonyms)."""
    with opened_services() as services:
        claims = issue.inspect_case(services.engine, services.keystore, services.settings, token)
    typer.echo(json.dumps(claims, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(case_app, name="case")
