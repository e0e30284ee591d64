"""Render benchmark JSON lines (bench/benchline.py) as the Markdown table of
docs/performance.md: ``python bench/table.py LOG...`` (or the lines on stdin).

Any line starting with ``BENCH `` is a figure; everything else is ignored, so the raw
output of any number of benchmarks can be fed in. A benchmark that printed no line is
listed from ``--expect`` (``make bench`` passes every script it ran) as "no figure".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PREFIX = "BENCH "


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def rows(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(PREFIX):
            try:
                out.append(json.loads(line[len(PREFIX) :]))
            except json.JSONDecodeError:
                continue
    return out


def render(figures: list[dict[str, Any]], expect: list[str]) -> str:
    head = (
        "| benchmark | figure | value | baseline (same run) | ratio | limit | met | command |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    body = []
    for f in figures:
        baseline = "—"
        if f.get("baseline"):
            baseline = f"{f['baseline']}: {_num(f.get('baseline_value'))}"
        met = {True: "yes", False: "**no**", None: "—"}[f.get("ok")]
        quick = " (quick)" if f.get("quick") else ""
        body.append(
            f"| {f['bench']} | {f['figure']}{quick} | {_num(f['value'])} {f['unit']} "
            f"| {baseline} | {_num(f.get('ratio'))} | {f['limit']} | {met} "
            f"| `{f['command']}` |"
        )
    seen = {f["bench"] for f in figures}
    for name in expect:
        if Path(name).name not in seen:
            body.append(f"| {Path(name).name} | no figure (failed, timed out or no BENCH line) "
                        "| | | | | | |")  # fmt: skip
    loads = [f["load"] for f in figures if f.get("load") is not None]
    note = (
        f"\nLoad average while measured: {min(loads)}–{max(loads)} on this shared machine; "
        "compare ratios, not absolute figures.\n"
        if loads
        else ""
    )
    return head + "\n".join(body) + "\n" + note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="*", type=Path)
    parser.add_argument("--expect", action="append", default=[])
    args = parser.parse_args()
    lines: list[str] = []
    if args.logs:
        for log in args.logs:
            lines += log.read_text(errors="replace").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    sys.stdout.write(render(rows(lines), args.expect))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
