"""Benchmark: sustained disclosures over mTLS keep-alive connections vs. /healthz.

Builds a throwaway world (dev keys, SQLite, the dev issuer, ``--records``
seeded records, one case naming ``--subjects`` of them with a large quota,
``--identities`` registered requester certificates), starts ``taxaddr serve``
with default settings in its own process on 127.0.0.1, and drives it with the
lean load generator of ``bench/loadgen.py`` (one asyncio process, bounded:
``--connections`` keep-alive mTLS connections, one identity each, 127.0.0.1 only).
Each phase also reports the server's CPU time per request (from /proc), the
figure that does not depend on how busy the machine is.

Phases (same server, same run):
  1. /healthz, closed loop, for ``--duration`` seconds: requests/s
  2. POST /v1/disclosures, closed loop: disclosures/s (every answer must be 200)
  3. POST /v1/disclosures paced at half of phase 2's rate: p50/p99 latency
Then, with ``--profile``, a cProfile summary of the disclosure path in-process, and
with ``--py-spy`` a py-spy sample of the SERVER process during phase 2, summed by
where the time goes (TLS, HTTP, the disclosure steps, ...).

Diagnostics: ``BENCH_SERVER_CMD`` replaces the server command (e.g. a wrapper that
profiles it), ``BENCH_SPY_FLAGS`` py-spy's flags, ``BENCH_KEEP_SPY`` keeps its output.

The default rate limit (600/min per requester identity) stays on; the load is
spread over many identities (one per connection) as it would be over many agents.

With ``--ab-synchronous ROUNDS``, the phases are instead run as an A/B of SQLite's
commit durability on the same world: ROUNDS x (a server with
``TAXADDR_SQLITE_SYNCHRONOUS=NORMAL``, then one with the default ``FULL``), each
measured closed-loop and paced at one common rate (``--paced-rate``, else half of
the first NORMAL round's rate), interleaved so that drift on a shared machine
hits both alike.

Run: .venv/bin/python bench/bench_api.py [--duration 10] [--connections 16] [--py-spy]
     .venv/bin/python bench/bench_api.py --ab-synchronous 2 --duration 8
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # deploy.cluster: the synthetic subjects and request body
from deploy.cluster.client import disclosure_body as cluster_disclosure_body  # noqa: E402
from deploy.cluster.cluster import REASON, STATUTE, person  # noqa: E402

__all__ = ["REASON", "STATUTE", "build", "person"]


def build(
    root: Path,
    *,
    records: int,
    cases: int,
    per_case: int,
    identities: int,
    policy_dir: Path | None = None,
) -> dict[str, Any]:
    """Create the world through the service's own code paths; returns what clients need.
    Without ``policy_dir``: the repository's policy with the personal limits raised
    (``write_load_policy``), since the load goes through a few identities."""
    from taxaddr.api.runtime import engine_for, keystore_for
    from taxaddr.audit.admin import cli_actor
    from taxaddr.cases.issue import CaseSpec, sign_case_reference
    from taxaddr.cases.issuers import add_from_file
    from taxaddr.config import Settings
    from taxaddr.crypto.keystore import DEV_ISSUER_ID, init_dev_keys
    from taxaddr.migrate import upgrade
    from taxaddr.store.importer import import_file

    if policy_dir is None:
        from deploy.cluster import write_load_policy

        policy_dir = write_load_policy(root / "policies")
    keys = root / "keys"
    init_dev_keys(keys)
    url = f"sqlite:///{root / 'taxaddr.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, keys_dir=keys, policy_dir=policy_dir)
    keystore = keystore_for(settings)
    add_from_file(
        engine_for(settings),
        DEV_ISSUER_ID,
        keys / "issuers" / f"{DEV_ISSUER_ID}.jwk",
        actor=cli_actor(),
    )
    csv_path = root / "records.csv"
    with csv_path.open("w") as fh:
        fh.write("tin,name,street,city,state,zip,tax_period,as_of\n")
        for i in range(records):
            tin, name = person(i)
            fh.write(f"{tin},{name},{i} Main Street,Springfield,IL,62701,2024,2024-03-01\n")
    import_file(engine_for(settings), keystore, csv_path)
    ids = [f"bench-agent-{n:03d}" for n in range(identities)]
    certs = root / "certs"
    certs.mkdir()
    register_identities(settings, certs, ids, agency="ICE-HSI", role="requester")
    case_refs = [
        sign_case_reference(
            keystore,
            keys,
            CaseSpec(
                issuer=DEV_ISSUER_ID,
                number=f"1:26-cr-{700 + c:05d}",
                court="D.D.C.",
                proceeding="criminal",
                statutes=[STATUTE],
                agency="ICE-HSI",
                requesters=ids,
                subjects=[person(c * per_case + i)[0] for i in range(per_case)],
                tax_periods=["2024"],
                max_disclosures=1_000_000,
                valid_days=30,
            ),
        )
        for c in range(cases)
    ]
    return {
        "env": {
            "TAXADDR_ENV": "test",
            "TAXADDR_DATABASE_URL": url,
            "TAXADDR_KEYS_DIR": str(keys),
            "TAXADDR_POLICY_DIR": str(policy_dir),
        },
        "ids": ids,
        "certs": str(certs),
        "ca": str(keys / "server-ca.crt"),
        "cases": case_refs,
        "per_case": per_case,
    }


def register_identities(
    settings: Any, certs: Path, ids: list[str], *, agency: str, role: str
) -> None:
    """Register each id with a client certificate of the world's CA (files in ``certs``)."""
    from taxaddr.api.runtime import engine_for, keystore_for
    from taxaddr.audit.admin import cli_actor
    from taxaddr.crypto import pki
    from taxaddr.db import write_transaction
    from taxaddr.disclosure.identity import add_requester

    ca = keystore_for(settings).files.client_ca()
    with write_transaction(engine_for(settings)) as session:
        for rid in ids:
            issued = pki.issue_cert(ca, rid, server=False)
            (certs / f"{rid}.crt").write_bytes(issued.cert_pem())
            (certs / f"{rid}.key").write_bytes(issued.key_pem())
            add_requester(
                session, requester_id=rid, agency=agency, role=role, cert=issued.cert,
                actor=cli_actor(),
            )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_client(world: dict[str, Any], rid: str, base: str) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=world["ca"])
    ctx.load_cert_chain(f"{world['certs']}/{rid}.crt", f"{world['certs']}/{rid}.key")
    return httpx.Client(base_url=base, verify=ctx, timeout=30.0)


def disclosure_body(world: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A request for a random subject of a random case of ``world``."""
    c = rng.randrange(len(world["cases"]))
    i = c * world["per_case"] + rng.randrange(world["per_case"])
    return cluster_disclosure_body(world["cases"][c], i)


def run_phase(
    world: dict[str, Any],
    *,
    port: int,
    server_pid: int,
    mode: str,
    connections: int,
    duration: float,
    rate: float | None = None,
) -> dict[str, Any]:
    """One phase through the lean load generator; adds the server's CPU per request."""
    conns = []
    for rid in world["ids"][:connections]:
        ctx = ssl.create_default_context(cafile=world["ca"])
        ctx.load_cert_chain(f"{world['certs']}/{rid}.crt", f"{world['certs']}/{rid}.key")
        conns.append(loadgen.Connection("127.0.0.1", port, ctx))
    healthz = loadgen.http_request("GET", "/healthz")
    # Disclosure requests are encoded before the clock starts (the client's cost is
    # not what is measured): enough for the phase at up to 2,000/s, each used once.
    rng = random.Random(1000 * connections + int(duration))
    planned = int(min(rate or 2000.0, 2000.0) * (duration + 1)) if mode != "healthz" else 0
    encoded = [
        loadgen.http_request(
            "POST",
            "/v1/disclosures",
            json.dumps(disclosure_body(world, rng), separators=(",", ":")).encode(),
        )
        for _ in range(planned)
    ]
    encoded.reverse()

    def make_request(_n: int) -> bytes:
        return healthz if mode == "healthz" else encoded.pop()

    cpu0 = loadgen.tree_cpu_seconds(server_pid)
    per0 = loadgen.children_cpu_seconds(server_pid)
    sys0 = loadgen.process_cpu_seconds(server_pid, system_only=True)
    own0 = time.process_time()
    result = loadgen.run(conns, make_request, mode=mode, duration=duration, rate=rate)
    cpu = loadgen.tree_cpu_seconds(server_pid) - cpu0
    per = loadgen.children_cpu_seconds(server_pid)
    kernel = loadgen.process_cpu_seconds(server_pid, system_only=True) - sys0
    own = time.process_time() - own0
    summary = result.summary()
    n = max(summary["requests"], 1)
    summary["server_cpu_ms_per_request"] = 1000 * cpu / n
    summary["server_kernel_ms_per_request"] = 1000 * kernel / n
    summary["server_cores_busy"] = cpu / duration
    summary["worker_cores_busy"] = [
        round((per[p] - per0.get(p, 0.0)) / duration, 2) for p in sorted(per)
    ]
    summary["loadgen_cpu_ms_per_request"] = 1000 * own / n
    return summary


# (label, substring of a py-spy frame "function (file:line)"); the innermost frame
# that matches one decides a sample's part. More specific parts come first.
# With --gil py-spy reports the GIL's last holder, so a thread blocked on the write
# lock (GIL released, nobody else running) shows up as "DisclosureService.write".
SPY_PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("queued on the write lock: process idle (disclosure)", ("DisclosureService.write (",)),
    ("policy evaluation (policy)", ("taxaddr/policy/",)),
    ("encrypted accounting record (audit)", ("audit/accounting.py",)),
    ("audit append (audit)", ("audit/log.py", "audit/leaf.py")),
    ("store lookup (store)", ("taxaddr/store/",)),
    ("case verification + usage (cases)", ("taxaddr/cases/",)),
    ("identity lookup (disclosure)", ("disclosure/identity.py",)),
    ("receipt (disclosure)", ("disclosure/receipt.py",)),
    ("commit/begin/session (db)", ("taxaddr/db/", "sqlalchemy/orm/session.py")),
    ("disclosure steps (disclosure)", ("disclosure/core.py",)),
    ("access log, edge (api)", ("api/middleware.py", "api/logs.py", "logging/")),
    ("TLS read/write (ssl)", ("ssl.py", "sslproto.py")),
    ("HTTP parsing, httptools/h11 (uvicorn)", ("h11/", "uvicorn/", "httptools")),
    ("routing, request, response (starlette/fastapi)", ("starlette/", "fastapi/")),
    ("thread hand-off (anyio)", ("anyio/", "concurrent/futures", "threading.py")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop")),
]


def spy_summary(raw: Path) -> str:
    """Sum py-spy's collapsed stacks (``--format raw``) by :data:`SPY_PARTS`."""
    totals: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        part = "other"
        for frame in reversed(stack.split(";")):
            hit = next((label for label, pats in SPY_PARTS if any(p in frame for p in pats)), None)
            if hit is not None:
                part = hit
                break
        totals[part] = totals.get(part, 0) + n
    lines = [f"py-spy: {samples} samples of the server's workers (thread holding the GIL)"]
    for part, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * n / max(samples, 1):5.1f} %  {part}")
    return "\n".join(lines)


def start_spy(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not installed (pip install py-spy); skipping the server profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "250",
         "--format", "raw", "--output", str(out),
         *os.environ.get("BENCH_SPY_FLAGS", "--nonblocking --gil --subprocesses").split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def profile_disclosures(world: dict[str, Any], n: int) -> str:
    """cProfile of the in-process disclosure path (no HTTP/TLS), top entries."""
    os.environ.update(world["env"])
    from taxaddr.api.app import create_app
    from taxaddr.api.routes.disclosures import decide
    from taxaddr.api.trace import Trace
    from taxaddr.config import get_settings

    get_settings.cache_clear()
    app = create_app(get_settings())
    svc, labels = app.state.svc, app.state.statute_labels
    rid = world["ids"][-1]
    der = ssl.PEM_cert_to_DER_cert(Path(f"{world['certs']}/{rid}.crt").read_text())
    rng = random.Random(7)
    svc.limiter.per_minute = 0  # profile the decision path, not the bucket
    bodies = [json.dumps(disclosure_body(world, rng)).encode() for _ in range(n + 50)]
    for b in bodies[:50]:
        decide(svc, der, b, Trace("warm"), labels)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for b in bodies[50:]:
        decide(svc, der, b, Trace("p"), labels)
    prof.disable()
    per = (time.perf_counter() - t0) / n * 1000
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(r"taxaddr|sqlalchemy/orm/session|regorus|nacl", 30)
    return f"in-process disclose(): {per:.2f} ms/request under cProfile ({n} requests)\n" + (
        out.getvalue()
    )


def start_server(world: dict[str, Any], **env_extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """``taxaddr serve`` on a free port for ``world``; returns once /healthz answers."""
    port = free_port()
    env = {
        **os.environ,
        **world["env"],
        "TAXADDR_PORT": str(port),
        "TAXADDR_LOG_LEVEL": "WARNING",
        **env_extra,
    }
    server = subprocess.Popen(
        os.environ.get("BENCH_SERVER_CMD", "").split()
        or [str(Path(sys.executable).parent / "taxaddr"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with make_client(world, world["ids"][0], f"https://127.0.0.1:{port}") as c:
        for _ in range(200):
            try:
                if c.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    return server, port


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def ab_synchronous(world: dict[str, Any], args: argparse.Namespace) -> None:
    """Disclosures/s and latency with PRAGMA synchronous=NORMAL vs. FULL, interleaved."""
    results: dict[str, list[dict[str, Any]]] = {"NORMAL": [], "FULL": []}
    rate = args.paced_rate
    for round_no in range(args.ab_synchronous):
        for mode in ("NORMAL", "FULL"):
            server, port = start_server(world, TAXADDR_SQLITE_SYNCHRONOUS=mode)
            try:
                phase = functools.partial(
                    run_phase,
                    world,
                    port=port,
                    server_pid=server.pid,
                    connections=min(args.connections, args.identities),
                    duration=args.duration,
                )
                closed = phase(mode="disclose")
                rate = rate or closed["per_second"] / 2
                paced = phase(mode="disclose", rate=rate)
            finally:
                stop_server(server)
            results[mode].append({"closed": closed, "paced": paced})
            print(
                f"round {round_no + 1} synchronous={mode:6s}: {closed['per_second']:7.1f} /s "
                f"(statuses {closed['statuses']}, p99 {closed['p99_ms']:.1f} ms, server CPU "
                f"{closed['server_cpu_ms_per_request']:.2f} ms/req); paced at {rate:.0f}/s: "
                f"p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms",
                flush=True,
            )
    print(json.dumps(results, indent=2))
    for mode, runs in results.items():
        per_second = [r["closed"]["per_second"] for r in runs]
        closed_p99 = [r["closed"]["p99_ms"] for r in runs]
        paced_p99 = [r["paced"]["p99_ms"] for r in runs]
        print(
            f"synchronous={mode:6s}: disclosures/s {sum(per_second) / len(runs):7.1f} "
            f"(rounds {', '.join(f'{v:.0f}' for v in per_second)}); closed-loop p99 "
            f"{sum(closed_p99) / len(runs):.1f} ms; p99 at {rate:.0f}/s "
            f"{sum(paced_p99) / len(runs):.1f} ms (rounds "
            f"{', '.join(f'{v:.1f}' for v in paced_p99)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--per-case", type=int, default=50, help="subjects named per case")
    parser.add_argument("--identities", type=int, default=64)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--paced-rate", type=float, default=0.0, help="phase 3 rate (default: half of phase 2)"
    )
    parser.add_argument(
        "--policy-dir",
        type=Path,
        default=None,
        help="default: policies/ with the personal limits raised for load",
    )
    parser.add_argument("--profile", type=int, default=300, help="0 to skip the profile")
    parser.add_argument(
        "--py-spy", action="store_true", help="sample the server with py-spy during phase 2"
    )
    parser.add_argument(
        "--ab-synchronous",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="A/B of SQLite synchronous=NORMAL vs. FULL instead of the three phases",
    )
    args = parser.parse_args()
    if quick():
        args.duration = min(args.duration, 4.0)

    root = Path(tempfile.mkdtemp(prefix="taxaddr-bench-api-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.perf_counter()
        world = build(
            root,
            records=args.records,
            cases=args.cases,
            per_case=args.per_case,
            identities=args.identities,
            policy_dir=args.policy_dir,
        )
        print(
            f"world built in {time.perf_counter() - t0:.1f}s: {args.records} records, "
            f"{args.cases} cases x {args.per_case} subjects, {args.identities} identities"
        )
        if args.ab_synchronous:
            ab_synchronous(world, args)
            return
        server, port = start_server(world)
        phase = functools.partial(
            run_phase,
            world,
            port=port,
            server_pid=server.pid,
            connections=min(args.connections, args.identities),
            duration=args.duration,
        )
        health = phase(mode="healthz")
        spy_out = root / "spy.txt"
        spy = start_spy(server.pid, args.duration, spy_out) if args.py_spy else None
        disc = phase(mode="disclose")
        if spy is not None:
            spy.wait(timeout=60)
        half = args.paced_rate or disc["per_second"] / 2
        paced = phase(mode="disclose", rate=half)
        ratio = disc["per_second"] / health["per_second"] if health["per_second"] else 0.0
        print(json.dumps({"healthz": health, "disclosures": disc, "paced_half": paced}, indent=2))
        print(
            f"healthz:      {health['per_second']:8.1f} req/s  "
            f"(server CPU {health['server_cpu_ms_per_request']:.2f} ms/request)"
        )
        print(
            f"disclosures:  {disc['per_second']:8.1f} /s  (statuses {disc['statuses']}, "
            f"server CPU {disc['server_cpu_ms_per_request']:.2f} ms/request)"
        )
        print(f"ratio disclosures/healthz: {ratio:.2f}")
        print(
            f"at {half:.0f}/s (half): p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms, "
            f"achieved {paced['per_second']:.1f}/s"
        )
        emit("disclosures over mTLS, closed loop, embedded policy", disc["per_second"], "/s",
             limit=">= 1,000/s", baseline="/healthz on the same server", ratio=ratio,
             baseline_value=health["per_second"], ok=disc["per_second"] >= 1000)  # fmt: skip
        emit("server CPU per disclosure", disc["server_cpu_ms_per_request"], "ms",
             limit="<= 1.0 ms", baseline="/healthz CPU per request",
             baseline_value=health["server_cpu_ms_per_request"],
             ok=disc["server_cpu_ms_per_request"] <= 1.0)  # fmt: skip
        emit(f"p99 latency paced at {half:.0f}/s", paced["p99_ms"], "ms", limit="(reported)")
        if spy is not None and spy_out.exists():
            print(spy_summary(spy_out))
            if os.environ.get("BENCH_KEEP_SPY"):
                shutil.copy(spy_out, os.environ["BENCH_KEEP_SPY"])
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
        server = None
        if args.profile:
            print(profile_disclosures(world, args.profile))
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
