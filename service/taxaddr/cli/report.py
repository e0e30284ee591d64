"""CLI: ``taxaddr report``: signed compliance reports and their verification."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from taxaddr.cli.days import day_option
from taxaddr.reports import compliance
from taxaddr.services import opened_services

report_app = typer.Typer(
    help="Signed compliance reports for courts and oversight.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    json = "json"
    csv = "csv"
    pdf = "pdf"


# The options every signed document takes (reports, a stay's impact list).
FromDay = Annotated[str, typer.Option("--from", help="first UTC day, YYYY-MM-DD (inclusive)")]
ToDay = Annotated[str, typer.Option("--to", help="last UTC day, YYYY-MM-DD (inclusive)")]
OutFile = Annotated[Path, typer.Option("--out", help="report file; the signature goes to FILE.sig")]
Format = Annotated[ReportFormat, typer.Option("--format", help="json, csv or pdf")]


@report_app.command("compliance")
def report_compliance(
    from_: FromDay,
    to: ToDay,
    out: OutFile,
    case: Annotated[str | None, typer.Option("--case", help="only this case number")] = None,
    fmt: Format = ReportFormat.json,
) -> None:
    """Write a signed compliance report (FILE and its detached Ed25519 signature FILE.sig)."""
    from_day, to_day = day_option(from_, "--from"), day_option(to, "--to")
    with opened_services() as s:
        result = compliance.write_compliance_report(
            s.engine,
            s.keystore,
            s.settings,
            from_day=from_day,
            to_day=to_day,
            fmt=fmt.value,
            out=out,
            case_number=case,
        )
    totals = result.report["totals"]
    typer.echo(
        f"wrote {out} and {compliance.signature_path(out)}: {totals['requests']} requests, "
        f"{totals['disclosed']} disclosed, checkpoint tree size "
        f"{result.report['checkpoint']['tree_size']}"
    )


@report_app.command("transparency")
def report_transparency(
    from_: FromDay,
    to: ToDay,
    out: OutFile,
    threshold: Annotated[
        int, typer.Option("--threshold", min=1, help="counts below it are shown as <K")
    ] = 10,
    fmt: Format = ReportFormat.json,
) -> None:
    """Write the signed public transparency report (small cells suppressed)."""
    from_day, to_day = day_option(from_, "--from"), day_option(to, "--to")
    with opened_services() as s:
        report = compliance.write_transparency_report(
            s.engine,
            s.keystore,
            s.settings,
            from_day=from_day,
            to_day=to_day,
            threshold=threshold,
            fmt=fmt.value,
            out=out,
        )
    typer.echo(
        f"wrote {out} and {compliance.signature_path(out)}: {report['totals']['requests']} "
        f"requests, checkpoint tree size {report['checkpoint']['tree_size']}"
    )


@report_app.command("verify")
def report_verify(
    file: Annotated[
        Path, typer.Argument(help="report file (json, csv or pdf); FILE.sig next to it")
    ],
) -> None:
    """Check FILE.sig and recompute every count from the audit log (exit 1 naming a mismatch)."""
    with opened_services() as s:
        check = compliance.verify_report_file(s.engine, s.keystore, s.settings, file)
    typer.echo(check.summary)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(report_app, name="report")
