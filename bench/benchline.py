"""The one JSON line every benchmark emits per figure, and the quick-mode switch.

A benchmark prints its own human-readable lines and, for each figure of the project's
table (docs/performance.md), one line::

    BENCH {"bench": "bench_audit.py", "figure": "...", "value": 952560.0, ...}

Fields (bench/README.md): ``bench`` (script name), ``figure`` (what is measured),
``value`` and ``unit``; ``baseline`` and ``baseline_value`` (what the figure is compared
with, measured in the same run; null if none), ``ratio`` (value / baseline_value, or
the inverse where lower is better — whatever the ``limit`` is stated in), ``limit``
(the target as text), ``ok`` (true/false/null: the target met in this run), ``command``
(how to run it), ``quick`` (true if run in quick mode), ``load`` (1-minute load average
when measured: this machine is shared and noisy). ``bench/table.py`` renders the lines
of any number of benchmarks into the table; it needs nothing else from a benchmark.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PREFIX = "BENCH "
QUICK_ENV = "TAXADDR_BENCH_QUICK"


def quick() -> bool:
    """True under ``make bench`` (bounded time): benchmarks shrink their sizes."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def emit(
    figure: str,
    value: float,
    unit: str,
    *,
    limit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    ratio: float | None = None,
    ok: bool | None = None,
    command: str | None = None,
) -> None:
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    line = {
        "bench": Path(sys.argv[0]).name,
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "limit": limit,
        "ok": ok,
        "command": command or "python bench/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "quick": quick(),
        "load": round(os.getloadavg()[0], 1),
    }
    print(PREFIX + json.dumps(line, sort_keys=True), flush=True)
