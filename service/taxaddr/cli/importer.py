"""CLI: ``taxaddr import FILE``: validate, encrypt and store address records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from taxaddr.config import get_settings
from taxaddr.services import Services
from taxaddr.store.importer import DEFAULT_BATCH_SIZE, RowProblem, import_file


def import_command(
    file: Annotated[Path, typer.Argument(help="CSV (.csv) or JSONL (.jsonl/.ndjson) file")],
    strict: Annotated[
        bool, typer.Option("--strict", help="stop at the first bad row (its batch is not written)")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="rows per batch, validated as a whole (--strict writes none of a failing batch)",
        ),
    ] = DEFAULT_BATCH_SIZE,
) -> None:
    """Import address records (columns: tin,name,street,city,state,zip,tax_period,as_of).

    Bad rows are reported on stderr as 'line N: <field>: <what is wrong>', never with
    their values. Exit status 0 only when every row was imported.
    """
    services = Services.from_settings(get_settings())
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        total = file.stat().st_size if file.is_file() else None
    except OSError:
        total = None
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        TextColumn("{task.fields[rows]} rows"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )

    def on_problem(problem: RowProblem) -> None:
        err.print(str(problem), markup=False)

    try:
        with progress:
            task = progress.add_task("import", total=total, rows=0)

            def on_progress(done: int, rows: int) -> None:
                progress.update(task, completed=done, rows=rows)

            report = import_file(
                services.engine,
                services.keystore,
                file,
                strict=strict,
                batch_size=batch_size,
                on_problem=on_problem,
                on_progress=on_progress,
            )
    finally:
        services.close()
    typer.echo(
        f"imported {report.imported} of {report.rows} rows "
        f"({report.inserted} new, {report.updated} updated, {report.unchanged} unchanged)"
    )
    if report.stopped_at is not None:
        err.print(
            f"stopped at line {report.stopped_at} (--strict); "
            "the rows of its batch were not written",
            markup=False,
        )
        raise typer.Exit(1)
    if report.refused:
        err.print(f"{report.refused} rows refused", markup=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
