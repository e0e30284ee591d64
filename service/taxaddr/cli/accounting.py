"""CLI: ``taxaddr accounting subject``: one taxpayer's accounting of disclosures, signed."""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.audit.admin import cli_actor
from taxaddr.audit.service import verifier_key
from taxaddr.db import write_transaction
from taxaddr.errors import NoUniqueMatch
from taxaddr.metrics import ACCOUNTING_LOOKUPS
from taxaddr.reports.accounting import (
    Officer,
    check_reason,
    render_accounting,
    subject_accounting,
    write_signed,
)
from taxaddr.services import opened_services

accounting_app = typer.Typer(
    help="Taxpayer accounting of disclosures (26 U.S.C. 6103(p)(3)(A)).", no_args_is_help=True
)


class AccountingFormat(StrEnum):
    json = "json"
    pdf = "pdf"


@accounting_app.command("subject")
def accounting_subject(
    tin: Annotated[str, typer.Option("--tin", help="the taxpayer's SSN or ITIN")],
    name: Annotated[str, typer.Option("--name", help="the taxpayer's name as stored")],
    reason: Annotated[
        str, typer.Option("--reason", help="why the accounting is read (40+ characters)")
    ],
    out: Annotated[Path, typer.Option("--out", help="output file; the signature goes to FILE.sig")],
    fmt: Annotated[
        AccountingFormat,
        typer.Option("--format", help="json (the API's answer) or pdf (a letter to the taxpayer)"),
    ] = AccountingFormat.json,
) -> None:
    """Every disclosure of one taxpayer's address with its inclusion proof (one audit leaf)."""
    text = check_reason(reason)
    actor = cli_actor()
    with opened_services() as s:
        with write_transaction(s.engine) as session:
            result = subject_accounting(
                session,
                s.keystore,
                s.settings,
                officer=Officer(actor.requester_id, actor.agency, actor.role),
                request_id=str(uuid.uuid4()),
                tin=tin,
                name=name,
                reason=text,
            )
        if result.answer is None:
            ACCOUNTING_LOOKUPS.labels(result="no_match").inc()
            raise NoUniqueMatch("the name is not the stored name of that TIN")
        data = render_accounting(
            result.answer,
            fmt.value,
            taxpayer_name=" ".join(name.split()),
            vkey=verifier_key(s.keystore, s.settings),
        )
        sig = write_signed(out, data, s.keystore)
    count = len(result.answer["disclosures"])
    ACCOUNTING_LOOKUPS.labels(result="listed" if count else "empty").inc()
    typer.echo(
        f"wrote {out} and {sig}: {count} disclosure(s), checkpoint tree size "
        f"{result.answer['checkpoint']['tree_size']}, lookup leaf {result.audit['leaf_index']}"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(accounting_app, name="accounting")
