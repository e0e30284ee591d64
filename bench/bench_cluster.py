"""Cluster benchmark (a script, not a test): ``python bench/bench_cluster.py``.

The production shape from real processes (deploy/cluster): PostgreSQL, HAProxy in TCP
mode, ``taxaddr serve`` replicas (one worker each), and either two real OPA servers
behind HAProxy (``policy=opa``) or the embedded engine (``policy=embedded``) — both
measured in the same run. For 1, 2 and 3 replicas in rotation (the others put in
HAProxy maintenance), a closed-loop load of ``--connections`` keep-alive mTLS
connections (bench/loadgen.py, 127.0.0.1) sends disclosures for ``--seconds``:

* disclosures/s and latency p50/p99 as the client saw them;
* server CPU per disclosure: the replicas' processes (supervisor + worker);
* PostgreSQL's share of the CPU used by the whole deployment (replicas, PostgreSQL,
  OPA, HAProxy) during the phase; the load generator's own CPU is printed beside;
* the serialization point: sequential audit appends on the same PostgreSQL (one
  leaf per committed transaction, bench_audit's loop): every disclosure of the
  deployment holds the audit head row for about that long, so its rate bounds the
  deployment's disclosures/s whatever the number of replicas.

The throwaway PostgreSQL runs with fsync=off (tests/pg.py's settings; synchronous_commit
stays on): a production commit also waits for a WAL flush inside that lock. This machine
has 2 cores shared with other work: the figures are relative, and ``load`` says how busy
it was.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import ssl
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from bench_audit import bench_appends
from benchline import emit, quick

from deploy.cluster import Cluster, disclosure_body


def _request_factory(case: str, subjects: int, seed: int) -> loadgen.RequestFactory:
    rng = random.Random(seed)

    def make(_conn: int) -> bytes:
        i = rng.randrange(subjects)
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = disclosure_body(case, i, request_id)
        return loadgen.http_request("POST", "/v1/disclosures", json.dumps(body).encode())

    return make


def _postmaster_pid(c: Cluster) -> int:
    return int((Path(c.state.pg_dir) / "data" / "postmaster.pid").read_text().split()[0])


def _cpu(c: Cluster) -> dict[str, float]:
    """CPU seconds so far of each part of the deployment (live processes)."""
    out = {"replicas": 0.0, "opa": 0.0, "haproxy": 0.0}
    for name, proc in c.state.procs.items():
        part = name.split("-")[0]
        part = {"replica": "replicas"}.get(part, part)
        if part in out and c.running(name):
            out[part] += loadgen.tree_cpu_seconds(proc.pid)
    out["postgres"] = loadgen.tree_cpu_seconds(_postmaster_pid(c))
    return out


def _phase(c: Cluster, active: int, args: argparse.Namespace, seed: int) -> dict[str, float]:
    for n in range(c.state.replicas):
        state = "ready" if n < active else "maint"
        c.haproxy(f"set server replicas/r{n} state {state}")
    time.sleep(0.5)
    idents = c.state.ids
    conns = []
    for k in range(args.connections):
        ctx = ssl.create_default_context(cafile=str(c.certs / "ca.crt"))
        ctx.check_hostname = False
        ident = idents[k % len(idents)]
        ctx.load_cert_chain(c.certs / f"{ident}.crt", c.certs / f"{ident}.key")
        conns.append(loadgen.Connection("127.0.0.1", c.state.lb_port, ctx))
    factory = _request_factory(c.state.cases["load"], 50, seed)  # the case names 50 subjects
    # warm-up: connections, caches, the policy engine
    loadgen.run(conns, factory, mode="warm-up", duration=1.0)
    before, client_before = _cpu(c), time.process_time()
    result = loadgen.run(conns, factory, mode=f"{active} replicas", duration=args.seconds)
    after, client_cpu = _cpu(c), time.process_time() - client_before
    summary = result.summary()
    ok = summary["statuses"].get(200, 0)
    if ok != summary["requests"]:
        print(f"  non-200 answers: {summary['statuses']}")
    used = {k: after[k] - before[k] for k in after}
    total = sum(used.values())
    return {
        "per_s": ok / args.seconds,
        "p50_ms": summary["p50_ms"] or 0.0,
        "p99_ms": summary["p99_ms"] or 0.0,
        "server_cpu_ms": used["replicas"] / ok * 1000 if ok else 0.0,
        "pg_cpu_ms": used["postgres"] / ok * 1000 if ok else 0.0,
        "opa_cpu_ms": used["opa"] / ok * 1000 if ok else 0.0,
        "pg_share": used["postgres"] / total if total else 0.0,
        "client_cpu_ms": client_cpu / max(1, summary["requests"]) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0 if quick() else 8.0)
    parser.add_argument("--connections", type=int, default=12)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--appends", type=int, default=500 if quick() else 2000)
    parser.add_argument("--policies", default="opa,embedded")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    rows: dict[tuple[str, int], dict[str, float]] = {}
    appends_per_s = 0.0
    for policy in args.policies.split(","):
        c = Cluster.create(
            replicas=args.replicas, policy=policy, rate_limit=0, records=2000, identities=12
        ).start()
        try:
            for active in range(1, args.replicas + 1):
                got = _phase(c, active, args, seed=active)
                rows[(policy, active)] = got
                print(
                    f"{policy:>8} {active} replica(s): {got['per_s']:7.0f} disclosures/s  "
                    f"p50 {got['p50_ms']:6.1f} ms  p99 {got['p99_ms']:6.1f} ms  "
                    f"server CPU {got['server_cpu_ms']:.2f} ms  PostgreSQL "
                    f"{got['pg_cpu_ms']:.2f} ms ({got['pg_share']:.0%} of the deployment's CPU)"
                    f"  OPA {got['opa_cpu_ms']:.2f} ms  load generator {got['client_cpu_ms']:.2f}"
                    " ms per request"
                )
            if policy == args.policies.split(",")[0]:
                # the serialization point, on this cluster's PostgreSQL (replicas idle)
                for n in range(args.replicas):
                    c.haproxy(f"set server replicas/r{n} state maint")
                appends_per_s, _ = bench_appends(c.database_url, args.appends)
                print(
                    f"sequential audit appends (one leaf per transaction): {appends_per_s:,.0f}/s"
                    f" = {1000 / appends_per_s:.2f} ms per disclosure under the head-row lock"
                )
        finally:
            c.stop()
    for (policy, active), got in rows.items():
        one = rows[(policy, 1)]["per_s"]
        emit(f"disclosures/s, PostgreSQL, {policy} policy, {active} replica(s) behind HAProxy",
             got["per_s"], "disclosures/s", limit="(scaling: see the report)",
             baseline="1 replica, same run", baseline_value=one)  # fmt: skip
        emit(f"server CPU per disclosure, {policy} policy, {active} replica(s)",
             got["server_cpu_ms"], "ms", limit="<= 1.0 ms (issue 22, SQLite)")  # fmt: skip
        emit(f"p99 latency, {policy} policy, {active} replica(s)", got["p99_ms"], "ms",
             limit="(reported)")  # fmt: skip
        emit(f"PostgreSQL share of CPU, {policy} policy, {active} replica(s)",
             got["pg_share"] * 100, "%", limit="(reported)")  # fmt: skip
    if appends_per_s:
        emit("serialization point: sequential audit appends on PostgreSQL", appends_per_s,
             "leaves/s", limit="bounds deployment disclosures/s")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")
    print(
        json.dumps(
            {f"{p}/{a}": {k: round(v, 3) for k, v in g.items()} for (p, a), g in rows.items()}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
