"""Import + lookup benchmark (a script, not a test): ``python bench/bench_import.py --rows N``.

In one run, in a temporary directory:

1. generates N synthetic rows (``taxaddr dev sample``'s generator) to a CSV file;
2. SQLite: imports them with the real importer (validate, normalize, blind index,
   per-record data key, two AES-256-GCM seals, AES key wrap, batched writes) -> rows/s;
3. SQLite baseline: the same file into an identical, freshly migrated table with the
   *same* pipeline (reading, validation, normalization, batching, existing-row check,
   writes, one commit per batch) but no cryptography. The ratio encrypted/baseline is
   the cost of encryption, not of parsing;
4. PostgreSQL (a throwaway cluster from tests/pg.py, unless ``--no-postgres``): the
   real importer (binary COPY per batch) -> rows/s, against a plain ``COPY`` of the
   same file, unencrypted and unvalidated, into a table of the file's columns: the
   database's floor for loading these rows;
5. peak RSS of each import, each run in its own fresh interpreter (``spawn``), so a
   figure is one import's, as ``taxaddr import`` would see it;
6. single ``lookup_address`` calls (query + unwrap + decrypt) on the N-row SQLite
   store: p50/p99 over ``--lookups`` random existing records, and the refusal path.

Targets: issue 3 (>= 30,000 rows/s, <= 3x baseline, lookup p50 <= 200 us), issue 22
(1M rows with peak RSS <= 300 MB at >= 36,000 rows/s on SQLite), issue 18 (PostgreSQL
>= 50,000 rows/s, <= 2x the plain COPY's time, peak RSS <= 300 MB).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pg: the cluster
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchline import emit, quick
from sqlalchemy.orm import Session

from taxaddr.crypto.keystore import FileKeyStore, init_dev_keys
from taxaddr.db import make_engine
from taxaddr.errors import NoUniqueMatch
from taxaddr.migrate import upgrade
from taxaddr.store.importer import BatchWriter, import_file
from taxaddr.store.lookup import lookup_address
from taxaddr.store.records import SealInput
from taxaddr.store.sample import SampleRecord, generate, write_sample


class PlainBatchWriter(BatchWriter):
    """The baseline: the importer's writer with every cryptographic step removed."""

    def index(self, normalized_tin: str) -> bytes:
        return normalized_tin.encode()

    def data_keys(self, count: int, version: int) -> list[Any]:
        del version
        return [None] * count

    def encode_many(
        self, items: list[SealInput], keys: list[Any], version: int
    ) -> list[tuple[bytes, bytes, bytes]]:
        del keys, version
        return [(b"", name, address) for _, _, _, _, name, address in items]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _reservoir(rows: int, seed: int, k: int) -> list[SampleRecord]:
    rng = random.Random(seed + 1)
    chosen: list[SampleRecord] = []
    for i, rec in enumerate(generate(rows, seed=seed)):
        if i < k:
            chosen.append(rec)
        else:
            j = rng.randrange(i + 1)
            if j < k:
                chosen[j] = rec
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000 if quick() else 1_000_000)
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the PostgreSQL import and COPY"
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument(
        "--lookups-only",
        action="store_true",
        help="reuse --workdir's store from an earlier run; measure lookups only",
    )
    args = parser.parse_args()
    if args.lookups_only and not (args.workdir and (args.workdir / "encrypted.db").exists()):
        parser.error("--lookups-only needs --workdir of an earlier run")

    tmp = tempfile.TemporaryDirectory(prefix="taxaddr-bench-")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    init_dev_keys(keys)
    keystore = FileKeyStore(keys)
    results: dict[str, float] = {}
    if not args.lookups_only:
        _imports(args, work, keystore, results)
    _lookups(args, work, keystore, results)
    print(f"load average at end: {os.getloadavg()}")
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))
    tmp.cleanup()


def _import_child(kind: str, url: str, keys: str, data: str, batch_size: int) -> dict[str, float]:
    """One import in a fresh interpreter: (seconds, CPU seconds, peak RSS MB, rows)."""
    keystore = FileKeyStore(Path(keys))
    engine = make_engine(url)
    t, cpu, reader_cpu = time.perf_counter(), time.process_time(), _children_cpu()
    if kind == "copy":
        rows = _plain_copy(engine, Path(data))
    else:
        writer = (BatchWriter if kind == "encrypted" else PlainBatchWriter)(engine, keystore)
        report = import_file(engine, keystore, Path(data), batch_size=batch_size, writer=writer)
        assert report.ok, report
        rows = report.inserted
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    reader_cpu = _children_cpu() - reader_cpu
    engine.dispose()
    # The reader process (files >= 4 MiB) counts: CPU added, peak RSS added to the
    # importer's (both peaks at once: an upper bound of the import's memory).
    reader_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "s": elapsed,
        "cpu_s": cpu + reader_cpu,
        "reader_cpu_s": reader_cpu,
        "rss_mb": _rss_mb() + reader_rss,
        "importer_rss_mb": _rss_mb(),
        "reader_rss_mb": reader_rss,
        "rows": rows,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PLAIN_TABLE = (
    "CREATE TABLE plain_rows (tin text, name text, street text, city text, state text, "
    "zip text, tax_period text, as_of date)"
)


def _plain_copy(engine: object, data: Path) -> int:
    """The database's floor: the file's bytes streamed into ``COPY … (FORMAT csv)``."""
    raw = engine.raw_connection()  # type: ignore[attr-defined]
    try:
        cur = raw.cursor()
        cur.execute(PLAIN_TABLE)
        with (
            data.open("rb") as fh,
            cur.copy("COPY plain_rows FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        cur.execute("SELECT count(*) FROM plain_rows")
        (count,) = cur.fetchone()
        raw.commit()
    finally:
        raw.close()
    return int(count)


def _run_child(*args: object) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_import_child, args)


def _imports(
    args: argparse.Namespace, work: Path, keystore: FileKeyStore, results: dict[str, float]
) -> None:
    del keystore
    data = work / "rows.csv"

    t = time.perf_counter()
    write_sample(data, args.rows, seed=args.seed)
    gen_s = time.perf_counter() - t
    print(f"load average at start: {os.getloadavg()}")
    print(f"generated {args.rows} rows ({data.stat().st_size / 1e6:.0f} MB) in {gen_s:.1f}s")

    phases: list[tuple[str, str, str]] = [
        ("encrypted", "encrypted", f"sqlite:///{work / 'encrypted.db'}"),
        ("baseline", "baseline", f"sqlite:///{work / 'baseline.db'}"),
    ]
    cluster = None
    if not args.no_postgres:
        from tests.pg import start_cluster

        cluster = start_cluster()
        _, pg_encrypted = cluster.create_database()
        _, pg_copy = cluster.create_database()
        phases += [("pg_encrypted", "encrypted", pg_encrypted), ("pg_copy", "copy", pg_copy)]
    try:
        for label, kind, url in phases:
            if kind != "copy":
                upgrade(url)
            got = _run_child(kind, url, str(work / "keys"), str(data), args.batch_size)
            assert got["rows"] == args.rows, got
            results[f"{label}_s"] = got["s"]
            results[f"{label}_rows_per_s"] = args.rows / got["s"]
            results[f"{label}_cpu_s"] = got["cpu_s"]
            results[f"{label}_rss_mb"] = got["rss_mb"]
            print(
                f"{label:>12}: {got['s']:7.1f}s  {args.rows / got['s']:9,.0f} rows/s  "
                f"(CPU {got['cpu_s']:.1f}s, reader process {got['reader_cpu_s']:.1f}s)  "
                f"peak RSS {got['rss_mb']:.0f} MB (importer {got['importer_rss_mb']:.0f} "
                f"+ reader {got['reader_rss_mb']:.0f})"
            )
    finally:
        if cluster is not None:
            cluster.stop()
    results["ratio"] = results["encrypted_s"] / results["baseline_s"]
    results["cpu_ratio"] = results["encrypted_cpu_s"] / results["baseline_cpu_s"]
    print(
        f"SQLite encrypted/baseline time ratio: {results['ratio']:.2f}x wall, "
        f"{results['cpu_ratio']:.2f}x CPU (target <= 3x)"
    )
    n = f"{args.rows:,}"
    rate = results["encrypted_rows_per_s"]
    emit(f"import of {n} rows, SQLite", rate, "rows/s", limit=">= 36,000 rows/s",
         baseline="same pipeline without cryptography",
         baseline_value=results["baseline_rows_per_s"], ok=rate >= 36_000)  # fmt: skip
    emit(f"import of {n} rows, SQLite, peak RSS", results["encrypted_rss_mb"], "MB",
         limit="<= 300 MB", ok=results["encrypted_rss_mb"] <= 300)  # fmt: skip
    if "pg_encrypted_s" in results:
        results["pg_ratio"] = results["pg_encrypted_s"] / results["pg_copy_s"]
        pg_rate = results["pg_encrypted_rows_per_s"]
        print(
            f"PostgreSQL import / plain COPY time ratio: {results['pg_ratio']:.2f}x (target <= 2x)"
        )
        # Two targets, two lines: the rate, and the time against the plain COPY's.
        emit(f"import of {n} rows, PostgreSQL", pg_rate, "rows/s", limit=">= 50,000 rows/s",
             baseline="plain COPY of the same rows, unencrypted",
             baseline_value=results["pg_copy_rows_per_s"], ok=pg_rate >= 50_000)  # fmt: skip
        emit(f"import of {n} rows, PostgreSQL, time / plain COPY's time", results["pg_ratio"],
             "x", limit="<= 2x", baseline="plain COPY of the same rows, unencrypted (s)",
             baseline_value=results["pg_copy_s"], ratio=results["pg_ratio"],
             ok=results["pg_ratio"] <= 2)  # fmt: skip
        emit(f"import of {n} rows, PostgreSQL, peak RSS", results["pg_encrypted_rss_mb"], "MB",
             limit="<= 300 MB", ok=results["pg_encrypted_rss_mb"] <= 300)  # fmt: skip


def _lookups(
    args: argparse.Namespace, work: Path, keystore: FileKeyStore, results: dict[str, float]
) -> None:

    sample = _reservoir(args.rows, args.seed, args.lookups)
    engine = make_engine(f"sqlite:///{work / 'encrypted.db'}")
    hits: list[float] = []
    misses: list[float] = []
    with Session(engine) as session:
        for rec in sample[:50]:  # warm-up: page cache, statement cache, dummy record
            lookup_address(
                session, keystore, tin=rec.tin, name=rec.name, tax_periods=[rec.tax_period]
            )
        for i, rec in enumerate(sample):
            t = time.perf_counter()
            got = lookup_address(
                session, keystore, tin=rec.tin, name=rec.name, tax_periods=[rec.tax_period]
            )
            hits.append(time.perf_counter() - t)
            assert got.street
            t = time.perf_counter()
            try:
                lookup_address(
                    session,
                    keystore,
                    tin=f"123-45-{1000 + i % 9000:04d}",
                    name=rec.name,
                    tax_periods=[rec.tax_period],
                )
            except NoUniqueMatch:
                misses.append(time.perf_counter() - t)
    engine.dispose()
    results.update(
        lookup_p50_us=_pct(hits, 0.50) * 1e6,
        lookup_p99_us=_pct(hits, 0.99) * 1e6,
        lookup_mean_us=statistics.fmean(hits) * 1e6,
        miss_p50_us=_pct(misses, 0.50) * 1e6,
        miss_p99_us=_pct(misses, 0.99) * 1e6,
        lookups_rss_mb=_rss_mb(),
        rows=args.rows,
    )
    print(
        f"lookup+decrypt on {args.rows:,} rows: p50 {results['lookup_p50_us']:.0f} us, "
        f"p99 {results['lookup_p99_us']:.0f} us (target p50 <= 200 us); "
        f"refusal path p50 {results['miss_p50_us']:.0f} us, p99 {results['miss_p99_us']:.0f} us"
    )
    emit(f"lookup + decrypt on {args.rows:,} rows, p50", results["lookup_p50_us"], "us",
         limit="<= 200 us", ok=results["lookup_p50_us"] <= 200)  # fmt: skip


if __name__ == "__main__":
    main()
