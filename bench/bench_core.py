"""Benchmark: CPU time per disclosure through the decision path in process (no HTTP, no TLS).

Builds the world of ``bench_api.py`` (dev keys, SQLite, ``--records`` records, cases
with a large quota, registered identities), makes the app's service once, and decides
``--n`` disclosures (every one must be disclosed), after ``--warmup`` unmeasured ones.
Reports the process CPU time per disclosure (``time.process_time``: the figure that
does not depend on how busy the machine is) and the wall time, for ``--rounds`` rounds.

Two paths are measured:

* ``edge+core``: what the HTTP route runs per request, minus HTTP: the decision core,
  the outcome's mapping to the access-log fields and the metrics
  (``api.routes.disclosures.decide``). Before issue 17 this was ``api.disclosure.disclose``
  (metrics inside the core); the script uses whichever the build on ``PYTHONPATH`` has,
  so one copy of it measures an old build against a new one (a same-run A/B):

      PYTHONPATH=/tmp/old/service .venv/bin/python /tmp/old/bench/bench_core.py
      .venv/bin/python bench/bench_core.py

  (the copy in the old tree imports that tree's ``bench_api.build``).
* ``core``: the decision core alone (``disclosure.core.disclose``), new builds only.

Run: .venv/bin/python bench/bench_core.py [--n 2000] [--rounds 3] [--records 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_api import build, disclosure_body  # the script's directory is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick


def paths(world: dict[str, Any]) -> dict[str, Callable[[bytes, bytes], bool]]:
    """The disclosure paths this build has, each as ``(cert_der, body) -> disclosed?``."""
    os.environ.update(world["env"])
    from taxaddr.api.app import create_app
    from taxaddr.audit.leaf import new_server_id
    from taxaddr.config import get_settings

    get_settings.cache_clear()
    app = create_app(get_settings())
    svc = app.state.svc
    svc.limiter.per_minute = 0  # measure the decision path, not the bucket
    try:
        from taxaddr.api.routes.disclosures import decide
        from taxaddr.api.trace import Trace
        from taxaddr.disclosure.core import disclose
        from taxaddr.disclosure.outcome import Caller, Disclosed
    except ImportError:  # a build from before issue 17: the core raised and counted
        try:
            from taxaddr.api.disclosure import Trace as OldTrace
            from taxaddr.api.disclosure import disclose as old_disclose
        except ImportError:  # moved to taxaddr.disclosure, not yet returning outcomes
            from taxaddr.disclosure.core import Trace as OldTrace  # type: ignore[attr-defined,no-redef]
            from taxaddr.disclosure.core import disclose as old_disclose  # type: ignore[no-redef]

        def old(der: bytes, body: bytes) -> bool:
            old_disclose(svc, der, body, OldTrace(new_server_id()))
            return True

        return {"edge+core": old}
    labels = app.state.statute_labels

    def edge(der: bytes, body: bytes) -> bool:
        return isinstance(decide(svc, der, body, Trace(new_server_id()), labels), Disclosed)

    def core(der: bytes, body: bytes) -> bool:
        return isinstance(disclose(svc, der, body, Caller(new_server_id())), Disclosed)

    return {"edge+core": edge, "core": core}


def measure(
    run: Callable[[bytes, bytes], bool], der: bytes, bodies: list[bytes], warmup: int
) -> tuple[float, float]:
    """(CPU ms, wall ms) per disclosure over ``bodies[warmup:]``."""
    for body in bodies[:warmup]:
        assert run(der, body), "warm-up disclosure refused"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for body in bodies[warmup:]:
        if not run(der, body):
            raise SystemExit("a measured disclosure was refused")
    n = len(bodies) - warmup
    return (time.process_time() - cpu0) / n * 1000, (time.perf_counter() - wall0) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--per-case", type=int, default=50)
    parser.add_argument("--n", type=int, default=2000, help="measured disclosures per round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--policy-dir",
        type=Path,
        default=None,
        help="default: policies/ with the personal limits raised for load; an A/B of two "
        "builds uses one policy for both (policy cost is not the build's)",
    )
    args = parser.parse_args()
    if quick():
        args.n, args.warmup, args.rounds = min(args.n, 500), 100, 2

    root = Path(tempfile.mkdtemp(prefix="taxaddr-bench-core-"))
    try:
        world = build(
            root,
            records=args.records,
            cases=args.cases,
            per_case=args.per_case,
            identities=1,
            policy_dir=args.policy_dir,
        )
        rid = world["ids"][0]
        der = ssl.PEM_cert_to_DER_cert(Path(f"{world['certs']}/{rid}.crt").read_text())
        available = paths(world)
        rng = random.Random(17)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in available}
        for _ in range(args.rounds):
            for name, run in available.items():  # interleaved: drift hits every path alike
                bodies = [
                    json.dumps(disclosure_body(world, rng)).encode()
                    for _ in range(args.warmup + args.n)
                ]
                results[name].append(measure(run, der, bodies, args.warmup))
        summary = {}
        for name, rounds in results.items():
            cpu = [r[0] for r in rounds]
            wall = [r[1] for r in rounds]
            summary[name] = {
                "cpu_ms_per_disclosure_median": round(statistics.median(cpu), 3),
                "cpu_ms_rounds": [round(c, 3) for c in cpu],
                "wall_ms_per_disclosure_median": round(statistics.median(wall), 3),
            }
            print(
                f"{name:10s} CPU {statistics.median(cpu):.3f} ms/disclosure "
                f"(rounds {', '.join(f'{c:.3f}' for c in cpu)}), "
                f"wall {statistics.median(wall):.3f} ms"
            )
        print(json.dumps(summary, indent=2))
        names = list(summary)
        for name in names:
            base = names[0] if name != names[0] else None
            emit(f"decision core CPU per disclosure ({name})",
                 summary[name]["cpu_ms_per_disclosure_median"], "ms", limit="(reported)",
                 baseline=base, baseline_value=summary[base]["cpu_ms_per_disclosure_median"]
                 if base else None)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
