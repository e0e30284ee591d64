"""``python -m deploy.cluster start|stop|status [--state DIR]`` (``make cluster``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from deploy.cluster.cluster import Cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state", type=Path, default=Path("var/cluster"))
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--policy", choices=["opa", "embedded"], default="opa")
    parser.add_argument("--rate-limit", type=int, default=600)
    args = parser.parse_args(argv)
    state = args.state.resolve()
    try:
        if args.command == "start":
            cluster = Cluster.create(
                state, replicas=args.replicas, policy=args.policy, rate_limit=args.rate_limit
            ).start()
            print(cluster.describe())
            print("stop it with: make cluster-stop")
            return 0
        if not (state / "cluster.json").exists():
            print(f"no cluster in {state}", file=sys.stderr)
            return 0 if args.command == "stop" else 1
        cluster = Cluster.load(state)
        if args.command == "stop":
            cluster.stop()
            print(f"stopped the cluster in {state} and removed it")
            return 0
        print(cluster.describe())
        for name in sorted(cluster.state.procs):
            print(f"  {name}: {'running' if cluster.running(name) else 'NOT RUNNING'}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(
            f"cluster: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
