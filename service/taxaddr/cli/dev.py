"""CLI: ``taxaddr dev``: helpers for demos and tests (synthetic data only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taxaddr.store.sample import write_sample

dev_app = typer.Typer(help="Development helpers (synthetic data only).", no_args_is_help=True)


@dev_app.command("sample")
def dev_sample(
    count: Annotated[int, typer.Option("--count", help="number of records")],
    out: Annotated[Path, typer.Option("--out", help="output file (.csv or .jsonl)")],
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same file)")] = 0,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="start with the documented demo records")
    ] = True,
) -> None:
    """Write clearly fake address records (surname TESTPERSON, synthetic ITINs)."""
    written = write_sample(out, count, seed=seed, demo=demo)
    typer.echo(f"wrote {written} synthetic records to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
