"""Benchmark: the witnessed, mirrorable log (issue 21).

Same run, one throwaway SQLite log of ``--leaves`` leaves (default 1,000,000; quick
mode 50,000):

1. tile reads in-process: full level-0 tiles and full entry bundles at random
   positions, per second, against the cheapest read of the same database (the head
   row, what /healthz-like probes cost) measured alike. In-process on purpose: over
   mTLS both would be bounded by the TLS/HTTP edge that bench_api.py measures;
2. ``export_tiles`` of the whole log to a fresh directory: seconds (target <= 20 s);
3. a witness's ``add-checkpoint`` with a consistency proof from N-1000 to N leaves:
   p50 over ``--rounds`` submissions, state persisted (fsync) each time (<= 5 ms);
4. with ``--disclosures`` (not in quick mode): disclosures/s over mTLS with two real
   witness processes configured (quorum 0, checkpoint interval 1 s) against none,
   interleaved rounds on one world (bench_api.py's world and load generator).

5. with ``--http``: full level-0 tiles and full entry bundles at random positions over
   mTLS keep-alive connections (``--connections`` oversight certificates, lean load
   generator of bench/loadgen.py) against /healthz on the same server, same run.

Run: .venv/bin/python bench/bench_tlog.py [--leaves 1000000] [--rounds 200] [--disclosures]
     .venv/bin/python bench/bench_tlog.py --http [--duration 8] [--connections 8]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchline

BATCH = 8192


def build_log(root: Path, leaves: int) -> tuple[object, object, object]:
    from taxaddr.config import Settings
    from taxaddr.crypto.keystore import FileKeyStore, init_dev_keys
    from taxaddr.db import make_engine
    from taxaddr.migrate import upgrade

    url = f"sqlite:///{root / 'tlog.db'}"
    upgrade(url)
    init_dev_keys(root / "keys")
    settings = Settings(env="test", database_url=url, keys_dir=root / "keys")
    engine = make_engine(url)
    append_leaves(engine, leaves)
    return engine, settings, FileKeyStore(root / "keys")


def append_leaves(engine: object, leaves: int) -> None:
    """``leaves`` synthetic leaves (no PII), appended in batches through the log's code."""
    from taxaddr.audit.leaf import LeafInput, case_number_hash
    from taxaddr.audit.log import bulk_append
    from taxaddr.db import write_transaction

    started = time.perf_counter()
    for start in range(0, leaves, BATCH):
        batch = [
            LeafInput(
                request_id=f"00000000-0000-4000-8000-{i:012x}",
                requester_id=f"agent-{i % 50}",
                agency=("ICE-HSI", "FBI", "DEA")[i % 3],
                role="requester",
                case_jti=f"jti-{i % 997}",
                case_number_hash=case_number_hash(f"1:26-cr-{i % 997:05d}"),
                statute="8 U.S.C. 1326",
                outcome=("disclosed", "denied")[i % 2],
                reason_codes=() if i % 2 == 0 else ("reason_insufficient",),
                subject_ref=f"{i:064x}",
                policy_version="sha256:" + "ab" * 32,
            )
            for i in range(start, min(leaves, start + BATCH))
        ]
        with write_transaction(engine) as session:  # type: ignore[arg-type]
            bulk_append(session, batch)
    print(f"built {leaves} leaves in {time.perf_counter() - started:.1f} s", flush=True)


def rate(fn: object, seconds: float) -> float:
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        fn()  # type: ignore[operator]
        count += 1
    return count / seconds


def tile_reads(engine: object, leaves: int, seconds: float) -> None:
    from sqlalchemy.orm import Session

    from taxaddr.audit import tiles
    from taxaddr.audit.log import read_head

    rng = random.Random(21)
    full = leaves // 256
    with Session(engine) as session:  # type: ignore[arg-type]
        head = rate(lambda: read_head(session), seconds)
        hashes = rate(lambda: tiles.hash_tile(session, 0, rng.randrange(full), 256), seconds)
        bundles = rate(lambda: tiles.entry_bundle(session, rng.randrange(full), 256), seconds)
    print(f"head reads {head:.0f}/s; full tiles {hashes:.0f}/s; entry bundles {bundles:.0f}/s")
    for name, value in (("full level-0 tiles", hashes), ("full entry bundles", bundles)):
        benchline.emit(
            f"{name} read in-process at {leaves:,} leaves",
            round(value, 1),
            "reads/s",
            limit="(reported)",
            baseline="head-row read, same run",
            baseline_value=round(head, 1),
        )


def export(engine: object, settings: object, keystore: object, leaves: int) -> None:
    from taxaddr.audit.tiles import export_tiles

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = export_tiles(engine, keystore, settings, Path(out))  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
    print(f"export-tiles: {done.tiles} tiles, {done.bundles} bundles in {seconds:.1f} s")
    target = 20.0 * leaves / 1_000_000
    benchline.emit(
        f"export-tiles of {leaves:,} leaves",
        round(seconds, 2),
        "s",
        limit=f"<= {target:g} s",
        ok=seconds <= target,
    )


def witness(engine: object, settings: object, keystore: object, rounds: int) -> None:
    from sqlalchemy.orm import Session

    from taxaddr.audit.checkpoint import Checkpoint, sign_checkpoint
    from taxaddr.audit.cosignature import CosignerKey
    from taxaddr.audit.log import read_head
    from taxaddr.audit.service import audit_verifier, consistency_proof
    from taxaddr.audit.witnessing import request_body
    from taxaddr.witness.protocol import add_checkpoint
    from taxaddr.witness.state import LogState, WitnessState

    origin = settings.audit_origin  # type: ignore[attr-defined]
    key = keystore.audit_signing_key()  # type: ignore[attr-defined]
    with Session(engine) as session:  # type: ignore[arg-type]
        head = read_head(session)
        size = head.tree_size
        old = size - 1000
        proof = consistency_proof(session, old, size)
    old_root = _root_at(engine, old)
    note = sign_checkpoint(Checkpoint(origin, size, head.root_hash), key, origin)
    body = request_body(old, proof, note)
    cosigner = CosignerKey.generate("bench.example/w")
    logs = {origin: [audit_verifier(keystore, settings)]}  # type: ignore[arg-type]
    times = []
    # The export just left hundreds of MB of dirty pages: flush them first, or every
    # fsync of the witness state waits for that writeback (a witness runs elsewhere).
    os.sync()
    with tempfile.TemporaryDirectory() as tmp:
        state = WitnessState(Path(tmp) / "state.json")
        durable, cpu = [], []
        for _ in range(rounds):
            with state.transaction() as known:
                known[origin] = LogState(old, old_root)
            started, cpu0 = time.perf_counter(), time.process_time()
            answer = add_checkpoint(body, logs, state, cosigner, int(time.time()))
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu0)
            assert answer.status == 200, answer.body
            durable.append(_durable_replace(Path(tmp) / "bare.json", state.path.read_bytes()))
        state.close()
    p50 = statistics.median(times) * 1000
    bare = statistics.median(durable) * 1000
    cpu50 = statistics.median(cpu) * 1000
    print(
        f"witness add-checkpoint {old}->{size}: p50 {p50:.2f} ms ({len(proof)} proof hashes); "
        f"CPU p50 {cpu50:.2f} ms; a bare durable replace of the state file, interleaved: "
        f"p50 {bare:.2f} ms (this disk's fsync)"
    )
    benchline.emit(
        f"witness add-checkpoint p50, proof {old:,} -> {size:,}",
        round(p50, 3),
        "ms",
        limit="<= 5 ms",
        ok=p50 <= 5.0,
        baseline="bare durable replace of the state file (fsync, rename, dir fsync), interleaved",
        baseline_value=round(bare, 3),
    )
    benchline.emit(
        f"witness add-checkpoint CPU p50, proof {old:,} -> {size:,}",
        round(cpu50, 3),
        "ms",
        limit="(reported)",
    )


def _durable_replace(path: Path, data: bytes) -> float:
    """Seconds to write ``data`` as the witness state is written: temp file, fsync,
    rename, fsync of the directory."""
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def _root_at(engine: object, size: int) -> bytes:
    """The root of the first ``size`` leaves, from stored subtree hashes."""
    from sqlalchemy.orm import Session

    from taxaddr.audit import merkle
    from taxaddr.db.repositories import audit as audit_repo

    with Session(engine) as session:  # type: ignore[arg-type]
        compact = merkle.CompactRange()
        for level, index in merkle.perfect_subtrees(0, size):
            (h,) = audit_repo.node_range(session, level, index, index + 1)
            compact.push_subtree(level, h)
        return compact.root()


def disclosures_with_witnesses(duration: float, rounds: int) -> None:
    import bench_api

    from taxaddr.api.runtime import keystore_for
    from taxaddr.audit.cosignature import CosignerKey
    from taxaddr.audit.service import verifier_key
    from taxaddr.config import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-tlog-"))
    atexit.register(shutil.rmtree, root, True)  # nothing left behind in /tmp
    world = bench_api.build(root, records=2000, cases=4, per_case=200, identities=16)
    settings = Settings(
        env="test",
        database_url=world["env"]["TAXADDR_DATABASE_URL"],
        keys_dir=Path(world["env"]["TAXADDR_KEYS_DIR"]),
    )
    log_vkey = verifier_key(keystore_for(settings), settings)
    witnesses, config = [], []
    for n in range(2):
        key = CosignerKey.generate(f"bench.example/w{n}")
        (root / f"w{n}.key").write_text(key.private_text())
        port = bench_api.free_port()
        witnesses.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from taxaddr.cli import main; main()",
                    "witness",
                    "serve",
                    "--key",
                    str(root / f"w{n}.key"),
                    "--log-vkey",
                    log_vkey,
                    "--state",
                    str(root / f"w{n}.state"),
                    "--port",
                    str(port),
                ],
                stderr=subprocess.DEVNULL,
            )
        )
        config.append({"vkey": key.cosigner.vkey(), "url": f"http://127.0.0.1:{port}"})
    time.sleep(2)
    results: dict[str, list[float]] = {"none": [], "two witnesses": []}
    cpu: dict[str, list[float]] = {"none": [], "two witnesses": []}
    try:
        for _ in range(rounds):
            for mode, env in (
                ("none", {}),
                (
                    "two witnesses",
                    {"TAXADDR_WITNESSES": json.dumps(config), "TAXADDR_CHECKPOINT_INTERVAL": "1"},
                ),
            ):
                server, port = bench_api.start_server(world, **env)
                try:
                    phase = bench_api.run_phase(
                        world,
                        port=port,
                        server_pid=server.pid,
                        mode="disclose",
                        connections=16,
                        duration=duration,
                    )
                finally:
                    bench_api.stop_server(server)
                results[mode].append(phase["per_second"])
                cpu[mode].append(phase["server_cpu_ms_per_request"])
                print(
                    f"{mode:14s}: {phase['per_second']:.0f} disclosures/s, "
                    f"{phase['server_cpu_ms_per_request']:.2f} ms CPU each",
                    flush=True,
                )
    finally:
        for proc in witnesses:
            proc.terminate()
            proc.wait(timeout=10)
    none, witnessed = statistics.mean(results["none"]), statistics.mean(results["two witnesses"])
    benchline.emit(
        "disclosures/s over mTLS with two witnesses (quorum 0)",
        round(witnessed, 1),
        "/s",
        limit="no measurable drop (ratio ~1)",
        baseline="no witnesses, interleaved rounds",
        baseline_value=round(none, 1),
    )


def tiles_over_https(leaves: int, duration: float, connections: int) -> None:
    """Full level-0 tiles and full entry bundles at random positions over mTLS keep-alive
    connections (oversight certificates), against /healthz on the same server and
    connections, phases one after the other in one run."""
    import ssl

    import bench_api
    import loadgen

    from taxaddr.api.runtime import engine_for
    from taxaddr.audit.tiles import tile_path
    from taxaddr.config import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-tlog-http-"))
    atexit.register(shutil.rmtree, root, True)  # nothing left behind in /tmp
    world = bench_api.build(root, records=10, cases=1, per_case=5, identities=1)
    settings = Settings(
        env="test",
        database_url=world["env"]["TAXADDR_DATABASE_URL"],
        keys_dir=Path(world["env"]["TAXADDR_KEYS_DIR"]),
    )
    certs = Path(world["certs"])
    overseers = [f"bench-overseer-{n:02d}" for n in range(connections)]
    bench_api.register_identities(settings, certs, overseers, agency="TIGTA", role="oversight")
    append_leaves(engine_for(settings), leaves)
    server, port = bench_api.start_server(world)
    try:
        conns = []
        for oid in overseers:
            ctx = ssl.create_default_context(cafile=world["ca"])
            ctx.load_cert_chain(str(certs / f"{oid}.crt"), str(certs / f"{oid}.key"))
            conns.append(loadgen.Connection("127.0.0.1", port, ctx))
        rng = random.Random(21)
        full = leaves // 256
        planned = 200_000
        encoded = {
            "healthz": [loadgen.http_request("GET", "/healthz")],
            "tiles": [
                loadgen.http_request("GET", "/v1/audit/tlog/" + tile_path(0, rng.randrange(full)))
                for _ in range(planned)
            ],
            "bundles": [
                loadgen.http_request(
                    "GET", "/v1/audit/tlog/" + tile_path("entries", rng.randrange(full))
                )
                for _ in range(planned)
            ],
        }
        rates: dict[str, float] = {}
        for mode in ("healthz", "tiles", "bundles"):
            requests = encoded[mode]
            counter = iter(range(10**9))

            def make_request(
                _n: int, requests: list[bytes] = requests, counter: Iterator[int] = counter
            ) -> bytes:
                return requests[next(counter) % len(requests)]

            result = loadgen.run(conns, make_request, mode=mode, duration=duration).summary()
            assert set(result["statuses"]) == {200}, result["statuses"]
            rates[mode] = result["per_second"]
            print(
                f"{mode} over mTLS: {result['per_second']:.0f}/s "
                f"(p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms)",
                flush=True,
            )
    finally:
        bench_api.stop_server(server)
    for mode, figure in (("tiles", "full level-0 tiles"), ("bundles", "full entry bundles")):
        benchline.emit(
            f"{figure} over mTLS at {leaves:,} leaves",
            round(rates[mode], 1),
            "requests/s",
            limit="(reported)",
            baseline="/healthz, same server and run",
            baseline_value=round(rates["healthz"], 1),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = benchline.quick()
    parser.add_argument("--leaves", type=int, default=50_000 if quick else 1_000_000)
    parser.add_argument("--rounds", type=int, default=50 if quick else 200)
    parser.add_argument("--seconds", type=float, default=2.0 if quick else 5.0)
    parser.add_argument("--disclosures", action="store_true")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument(
        "--http", action="store_true", help="also tiles and bundles over mTLS vs /healthz"
    )
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, settings, keystore = build_log(Path(tmp), args.leaves)
        tile_reads(engine, args.leaves, args.seconds)
        export(engine, settings, keystore, args.leaves)
        witness(engine, settings, keystore, args.rounds)
        engine.dispose()  # type: ignore[attr-defined]
    if args.http:
        tiles_over_https(args.leaves, args.duration, args.connections)
    if args.disclosures and not quick:
        disclosures_with_witnesses(args.duration, rounds=2)


if __name__ == "__main__":
    main()
