"""Audit log benchmark (a script, not a test): ``python bench/bench_audit.py``.

Measures, on SQLite in a temporary directory:

1. appends inside committed transactions, one leaf per ``write_transaction``
   (target: at least 2,000 leaves/s);
2. full verification of a large log with ``verify_log`` (target: at least
   300,000 leaves/s), after building it with the bulk append path;
3. inclusion proofs served from storage at that size (target: at most 1 ms).

Options: ``--appends N`` (default 3000), ``--leaves N`` (default 1,000,000),
``--proofs N`` (default 2000), ``--postgres URL`` to run step 1 against PostgreSQL too.
Quick mode (``make bench``): 1,000 appends, 262,144 leaves, 500 proofs.

Verification is measured three ways in the same run: the verifier as shipped (both
cores: a helper process scans from the end), the same verifier in one process, and the
baseline "read every leaf and SHA-256 it in one process" (no tree, no checks): the
floor of the one-process design.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import hashlib
import sqlite3
import threading

from benchline import emit, quick

from taxaddr.audit import merkle
from taxaddr.audit import service as audit_service
from taxaddr.audit.leaf import LeafInput, case_number_hash
from taxaddr.audit.log import append_leaf, bulk_append
from taxaddr.audit.service import inclusion_proof, latest_checkpoint, verify_log
from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore, init_dev_keys
from taxaddr.db import WriterQueue, make_engine, write_transaction
from taxaddr.db.group import GroupCommitter
from taxaddr.migrate import upgrade

T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
CASE = case_number_hash("1:26-cr-00123")


def leaf(i: int) -> LeafInput:
    return LeafInput(
        request_id=str(uuid.UUID(int=i + 1)),
        requester_id=f"agent-{i % 50}",
        agency=("ICE-HSI", "FBI", "DEA")[i % 3],
        role="requester",
        case_jti=f"jti-{i % 1000}",
        case_number_hash=CASE,
        statute="8 U.S.C. 1326",
        outcome=("disclosed", "denied", "no_match")[i % 3],
        reason_codes=("case_expired",) if i % 3 == 1 else (),
        subject_ref=f"{i:064x}",
        policy_version="bench",
        time=T0 + timedelta(milliseconds=i),
    )


def bench_appends(url: str, n: int) -> tuple[float, float]:
    """(leaves/s by wall clock, leaves/s by this process's CPU time)."""
    engine = make_engine(url)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        with write_transaction(engine) as session:
            append_leaf(session, leaf(i))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    engine.dispose()
    return n / elapsed, n / cpu


def bench_group_appends(url: str, n: int, threads: int = 8) -> tuple[float, float]:
    """(leaves/s, mean group size): ``threads`` threads each appending one leaf per
    transaction through the group commit (taxaddr.db.group), every commit durable."""
    engine = make_engine(url)
    committer = GroupCommitter(engine, WriterQueue(engine))
    per_thread = n // threads

    def worker(k: int) -> None:
        for i in range(k * per_thread, (k + 1) * per_thread):
            committer.run(lambda session, i=i: append_leaf(session, leaf(i)))

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    committer.close()
    engine.dispose()
    return per_thread * threads / elapsed, committer.members / max(committer.groups, 1)


def bench_threaded_appends(url: str, n: int, threads: int = 8) -> float:
    """Leaves/s of ``threads`` threads each committing one leaf per transaction."""
    engine = make_engine(url)
    per_thread = n // threads

    def worker(k: int) -> None:
        for i in range(k * per_thread, (k + 1) * per_thread):
            with write_transaction(engine) as session:
                append_leaf(session, leaf(i))

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return per_thread * threads / elapsed


def build_bulk(url: str, n: int, batch: int = 20_000) -> float:
    engine = make_engine(url)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        with write_transaction(engine) as session:
            bulk_append(session, [leaf(i) for i in range(lo, min(n, lo + batch))])
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    if quick():
        args.appends, args.leaves, args.proofs = 1000, 1 << 18, 500

    with tempfile.TemporaryDirectory(prefix="taxaddr-bench-") as tmp:
        keys = Path(tmp) / "keys"
        init_dev_keys(keys)
        keystore = FileKeyStore(keys)

        url = f"sqlite:///{tmp}/append.db"
        upgrade(url)
        wall, cpu = bench_appends(url, args.appends)
        print(
            f"append, one leaf per committed transaction (SQLite): {wall:,.0f} leaves/s "
            f"(CPU-time rate {cpu:,.0f}/s)"
        )
        emit("audit append, one leaf per durable transaction (SQLite)", wall, "leaves/s",
             limit=">= 2,000 leaves/s", ok=wall >= 2000)  # fmt: skip
        grouped, mean_group = bench_group_appends(url, args.appends)
        print(
            f"append through the group commit, 8 threads (SQLite): {grouped:,.0f} leaves/s "
            f"(mean group {mean_group:.1f} transactions per durable commit)"
        )
        emit("audit append through the group commit, 8 threads (SQLite)", grouped, "leaves/s",
             limit=">= 2,000 leaves/s", baseline="one leaf per durable transaction",
             baseline_value=wall, ok=grouped >= 2000)  # fmt: skip
        if args.postgres:
            upgrade(args.postgres)
            wall, cpu = bench_appends(args.postgres, args.appends)
            print(
                f"append, one leaf per committed transaction (PostgreSQL): {wall:,.0f} leaves/s "
                f"(CPU-time rate {cpu:,.0f}/s)"
            )
            # 8 threads, each its own transaction per leaf, locking the head row in turn
            # (what every replica did per request) vs. the same through the group commit.
            threaded = bench_threaded_appends(args.postgres, args.appends)
            grouped, mean_group = bench_group_appends(args.postgres, args.appends)
            print(
                f"append, 8 threads, PostgreSQL: one transaction per leaf {threaded:,.0f}/s; "
                f"group commit {grouped:,.0f}/s (mean group {mean_group:.1f})"
            )
            emit("audit append through the group commit, 8 threads (PostgreSQL)", grouped,
                 "leaves/s", limit="(reported)", baseline="8 threads, one transaction each",
                 baseline_value=threaded)  # fmt: skip

        url = f"sqlite:///{tmp}/big.db"
        upgrade(url)
        settings = Settings(env="test", database_url=url, keys_dir=keys)
        half = args.leaves // 2
        built = build_bulk(url, half)
        engine = make_engine(url)
        with write_transaction(engine) as session:
            latest_checkpoint(session, keystore, settings)
        built += build_bulk_from(url, half, args.leaves)
        with write_transaction(engine) as session:
            latest_checkpoint(session, keystore, settings)
        print(f"bulk build of {args.leaves:,} leaves: {built:.1f} s")
        print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        rates: dict[str, list[float]] = {"both cores": [], "one process": [], "bare": []}
        for _ in range(3):
            for mode in ("both cores", "one process"):
                audit_service.PARALLEL = mode == "both cores"
                with write_transaction(engine) as session:
                    start, cpu = time.perf_counter(), time.process_time()
                    report = verify_log(session, keystore, settings)
                    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                assert report.ok, report.message
                rates[mode].append(report.tree_size / elapsed)
                print(
                    f"full verification ({mode}) of {report.tree_size:,} leaves against "
                    f"{report.checkpoints} checkpoints: {elapsed:.2f} s = "
                    f"{report.tree_size / elapsed:,.0f} leaves/s "
                    f"(this process's CPU-time rate {report.tree_size / cpu:,.0f}/s)"
                )
            rates["bare"].append(bare_hash_rate(f"{tmp}/big.db"))
            bare = rates["bare"][-1]
            print(f"baseline, read + SHA-256 of every leaf, one process: {bare:,.0f}/s")
        audit_service.PARALLEL = True
        best = {k: max(v) for k, v in rates.items()}
        emit(f"audit verify, {args.leaves:,} leaves (both cores)", best["both cores"], "leaves/s",
             limit=">= 1,000,000 leaves/s", baseline="read+hash, one process",
             baseline_value=best["bare"], ok=best["both cores"] >= 1_000_000)  # fmt: skip
        emit(f"audit verify, {args.leaves:,} leaves (one process)", best["one process"],
             "leaves/s", limit="(the previous design)", baseline="read+hash, one process",
             baseline_value=best["bare"])  # fmt: skip

        rng = random.Random(6962)
        size = args.leaves
        timings: list[float] = []
        with write_transaction(engine) as session:
            inclusion_proof(session, 0, size)  # warm up
            for _ in range(args.proofs):
                index = rng.randrange(size)
                start = time.perf_counter()
                proof = inclusion_proof(session, index, size)
                timings.append(time.perf_counter() - start)
            assert len(proof) == merkle.inclusion_ranges(index, size).__len__()
        timings.sort()
        p99 = timings[int(len(timings) * 0.99)] * 1e3
        print(
            f"inclusion proof at {size:,} leaves ({args.proofs} random leaves): "
            f"median {statistics.median(timings) * 1e3:.3f} ms, p99 {p99:.3f} ms"
        )
        emit(f"inclusion proof at {size:,} leaves, p99", p99, "ms", limit="<= 1 ms", ok=p99 <= 1)
        engine.dispose()
    return 0


def bare_hash_rate(path: str) -> float:
    """Leaves/s of reading every stored leaf and SHA-256-ing it, in one process."""
    db = sqlite3.connect(path)
    sha256 = hashlib.sha256
    start = time.perf_counter()
    n = 0
    cursor = db.execute("SELECT leaf_json FROM audit_leaves ORDER BY leaf_index")
    while rows := cursor.fetchmany(1 << 14):
        n += len([sha256(b"\x00" + d).digest() for (d,) in rows])
    elapsed = time.perf_counter() - start
    db.close()
    return n / elapsed


def build_bulk_from(url: str, lo: int, hi: int, batch: int = 20_000) -> float:
    engine = make_engine(url)
    start = time.perf_counter()
    for a in range(lo, hi, batch):
        with write_transaction(engine) as session:
            bulk_append(session, [leaf(i) for i in range(a, min(hi, a + batch))])
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


if __name__ == "__main__":
    raise SystemExit(main())
