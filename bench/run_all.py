"""``make bench``: run every ``bench/bench_*.py`` in quick mode and print the table.

Each benchmark runs in its own process with ``TAXADDR_BENCH_QUICK=1`` (benchmarks
shrink their sizes; see bench/README.md) and a time limit (``--timeout``, default
300 s each), its output is kept under ``--out`` (default ``bench/out/``), and the
``BENCH`` JSON lines of all of them are rendered by ``bench/table.py`` into the table
of docs/performance.md. A new ``bench/bench_*.py`` that prints such lines is picked up
with nothing else to change. ``--full`` runs without quick mode (the sizes of the
issue's figures; tens of minutes). ``--only NAME`` (repeatable) picks benchmarks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from table import render, rows  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.full:
        env["TAXADDR_BENCH_QUICK"] = "1"
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only or s.name in args.only]
    lines: list[str] = []
    for script in scripts:
        log = args.out / f"{script.stem}.log"
        started = time.perf_counter()
        print(f"== {script.name} ...", end=" ", flush=True)
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
                check=False,
            )
            output = done.stdout.decode(errors="replace")
            status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace")
            status = f"timed out after {args.timeout:.0f} s"
        log.write_text(output)
        found = rows(output.splitlines())
        print(f"{status}, {len(found)} figure(s), {time.perf_counter() - started:.0f} s")
        lines += output.splitlines()
    print()
    sys.stdout.write(render(rows(lines), [s.name for s in scripts]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
