"""Import + lookup benchmark (a script, not a test): ``python bench/bench_import.py --rows N``.

In one run, in a temporary directory, on SQLite:

1. generates N synthetic rows (``taxaddr dev sample``'s generator) to a CSV file;
2. imports them with the real importer (validate, normalize, blind index, per-record
   data key, two AES-256-GCM seals, AES key wrap, batched executemany) -> rows/s;
3. baseline: imports the same file into an identical, freshly migrated
   ``address_records`` table in a second database with the *same* pipeline
   (reading, validation, normalization, batching, existing-row check,
   executemany, one commit per batch) but no cryptography: the TIN goes into
   ``blind_index`` and name/address are stored as plain UTF-8. The ratio
   encrypted/baseline is therefore the cost of encryption, not of parsing;
4. peak RSS of the process (``ru_maxrss``) across all of the above;
5. single ``lookup_address`` calls (query + unwrap + decrypt) on the N-row store:
   p50/p99 over ``--lookups`` random existing records, and the refusal path
   (unknown TIN) for comparison.

Targets (issue 3): >= 30,000 rows/s, <= 3x baseline, <= 300 MB RSS, lookup p50 <= 200 us.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

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

    def encode_many(self, items: list[SealInput], version: int) -> list[tuple[bytes, bytes, bytes]]:
        del version
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
    parser.add_argument("--rows", type=int, default=1_000_000)
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


def _imports(
    args: argparse.Namespace, work: Path, keystore: FileKeyStore, results: dict[str, float]
) -> None:
    data = work / "rows.csv"

    t = time.perf_counter()
    write_sample(data, args.rows, seed=args.seed)
    gen_s = time.perf_counter() - t
    print(f"load average at start: {os.getloadavg()}")
    print(f"generated {args.rows} rows ({data.stat().st_size / 1e6:.0f} MB) in {gen_s:.1f}s")

    for label, writer_cls in (("encrypted", BatchWriter), ("baseline", PlainBatchWriter)):
        url = f"sqlite:///{work / (label + '.db')}"
        upgrade(url)
        engine = make_engine(url)
        writer = writer_cls(engine, keystore)
        t, cpu = time.perf_counter(), time.process_time()
        report = import_file(engine, keystore, data, batch_size=args.batch_size, writer=writer)
        elapsed = time.perf_counter() - t
        cpu = time.process_time() - cpu
        assert report.ok
        assert report.inserted == args.rows, report
        engine.dispose()
        results[f"{label}_s"] = elapsed
        results[f"{label}_rows_per_s"] = args.rows / elapsed
        results[f"{label}_cpu_s"] = cpu
        print(
            f"{label:>9}: {elapsed:7.1f}s  {args.rows / elapsed:9,.0f} rows/s  "
            f"(CPU {cpu:.1f}s: {args.rows / cpu:,.0f} rows per CPU-second)  "
            f"(peak RSS so far {_rss_mb():.0f} MB)"
        )
    results["ratio"] = results["encrypted_s"] / results["baseline_s"]
    results["cpu_ratio"] = results["encrypted_cpu_s"] / results["baseline_cpu_s"]
    print(
        f"encrypted/baseline time ratio: {results['ratio']:.2f}x wall, "
        f"{results['cpu_ratio']:.2f}x CPU (target <= 3x)"
    )


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
        peak_rss_mb=_rss_mb(),
        rows=args.rows,
    )
    print(f"peak RSS: {results['peak_rss_mb']:.0f} MB (target <= 300 MB)")
    print(
        f"lookup+decrypt on {args.rows:,} rows: p50 {results['lookup_p50_us']:.0f} us, "
        f"p99 {results['lookup_p99_us']:.0f} us (target p50 <= 200 us); "
        f"refusal path p50 {results['miss_p50_us']:.0f} us, p99 {results['miss_p99_us']:.0f} us"
    )


if __name__ == "__main__":
    main()
