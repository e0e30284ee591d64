"""Oversight benchmark (a script, not a test): ``python bench/bench_reports.py``.

Measures, on SQLite in a temporary directory:

1. a signed compliance report (JSON, CSV and PDF) over a log of ``--leaves``
   audit leaves (default 1,000,000) spread over 30 days, 7 agencies, 8 statutes,
   every outcome and many refusal reasons, 200 case references: wall time and
   peak RSS of a fresh process that builds, renders and signs it
   (targets: at most 10 s and at most 500 MB);
2. ``taxaddr report verify`` of the JSON report (recount from the leaf JSON;
   informational, no target);
3. the ``/metrics`` scrape work (the route's tree-size read plus
   ``generate_latest``) with every label combination of the contract's metrics
   populated (target: at most 50 ms).

The log is built with the audit module's bulk append (the real leaf code path).
Options: ``--leaves N``, ``--scrapes N`` (default 200), ``--keep DIR`` to reuse a
built log between runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from taxaddr.audit import merkle
from taxaddr.audit.admin import cli_actor
from taxaddr.audit.leaf import LeafInput, case_number_hash, format_time, parse_time
from taxaddr.audit.log import bulk_append, read_head
from taxaddr.config import Settings
from taxaddr.crypto.keystore import init_dev_keys
from taxaddr.db import make_engine, write_transaction
from taxaddr.db.schema import HEAD_ID, AuditHead, AuditLeaf, CaseReference
from taxaddr.errors import CODE_ORDER
from taxaddr.migrate import upgrade

DAYS = 30
T0 = datetime(2026, 10, 1, tzinfo=UTC)
AGENCIES = ("ICE-HSI", "FBI", "DEA", "USMS", "ATF", "HSI-CBP", "DOJ-OIG")
STATUTES = (
    "8 U.S.C. 1253(a)(1)",
    "8 U.S.C. 1324",
    "8 U.S.C. 1325",
    "8 U.S.C. 1326",
    "18 U.S.C. 1028",
    "18 U.S.C. 1546",
    "8 U.S.C. 1227",
    "8 U.S.C. 1182",
)
DENIALS = (
    "proceeding_not_criminal",
    "statute_not_criminal",
    "statute_not_on_case",
    "agency_mismatch",
    "requester_not_on_case",
    "subject_not_on_case",
    "tax_period_not_covered",
    "reason_insufficient",
    "address_incomplete",
    "case_quota_exhausted",
    "case_expired",
    "case_revoked",
)
CASES = 200
REPO = Path(__file__).resolve().parents[1]
# What docs/oversight.md asks of the audit table so that every report query is
# index-only: the summary index extended by case_jti and subject_ref, and
# (case_jti, outcome) for the per-case disclosure counts.
PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_bench_summary_ext ON audit_leaves "
    "(day, agency, statute, outcome, reason, case_jti, subject_ref)",
    "CREATE INDEX IF NOT EXISTS ix_bench_case_outcome ON audit_leaves (case_jti, outcome)",
)


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick  # noqa: E402


def _case_number(c: int) -> str:
    return f"1:26-cr-{c:05d}"


_CASE_HASHES = [case_number_hash(_case_number(c)) for c in range(CASES)]


def leaf(i: int, n: int) -> LeafInput:
    kind = i % 10
    if kind < 5:
        outcome, reasons = "disclosed", ()
    elif kind < 8:
        outcome, reasons = "denied", (DENIALS[(i // 10) % len(DENIALS)],)
    elif kind < 9:
        outcome, reasons = "no_match", ()
    else:
        outcome, reasons = ("error", ()) if i % 1000 == 9 else ("denied", ("reason_insufficient",))
    c = i % CASES
    return LeafInput(
        request_id=str(uuid.UUID(int=i + 1)),
        requester_id=f"agent-{i % 50}",
        agency=AGENCIES[i % len(AGENCIES)],
        role="requester",
        case_jti=f"jti-{c}",
        case_number_hash=_CASE_HASHES[c],
        statute=STATUTES[(i // 7) % len(STATUTES)],
        outcome=outcome,
        reason_codes=reasons,
        subject_ref=f"{(i * 2654435761) % (1 << 40):064x}",
        policy_version="bench",
        time=T0 + timedelta(seconds=(DAYS * 86400 - 1) * i // max(n, 1)),
    )


def build(url: str, n: int, batch: int = 50_000) -> float:
    """Bulk-insert ``n`` leaves: the audit module's leaf object, canonical bytes and RFC 6962
    hashes, written with one executemany per batch and the head's compact range at the end.

    ``audit_nodes`` (proof storage) is not filled: reports and their verification
    never read it. The first leaves go through ``bulk_append`` and are checked to
    serialize byte for byte like this fast path.
    """
    engine = make_engine(url)
    start = time.perf_counter()
    with write_transaction(engine) as session:
        session.execute(insert(CaseReference), _case_rows())
        # the real append path for leaf 0, then the fast path must agree with it
        bulk_append(session, [leaf(0, n)])
    compact = merkle.CompactRange()
    with Session(engine) as session:
        stored = session.execute(select(AuditLeaf.leaf_json).where(AuditLeaf.leaf_index == 0))
        first = bytes(stored.scalar_one())
    if _fast_leaf(0, n)[1] != first:
        raise SystemExit("fast path does not reproduce the canonical leaf bytes")
    compact.push_subtree(0, merkle.leaf_hash(first))
    for lo in range(1, n, batch):
        rows = []
        for i in range(lo, min(n, lo + batch)):
            obj, data = _fast_leaf(i, n)
            h = merkle.leaf_hash(data)
            compact.push_subtree(0, h)
            rows.append(_row(i, obj, data, h))
        with write_transaction(engine) as session:
            session.execute(insert(AuditLeaf), rows)
        done = min(n, lo + batch)
        if done // 200_000 != (done - len(rows)) // 200_000 or done == n:
            print(f"  built {done:,} leaves ({time.perf_counter() - start:.0f} s)", flush=True)
    with write_transaction(engine) as session:
        session.execute(
            update(AuditHead)
            .where(AuditHead.id == HEAD_ID)
            .values(tree_size=compact.size, compact_range=b"".join(compact.hashes()))
        )
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def _case_rows() -> list[dict[str, object]]:
    return [
        {
            "jti": f"jti-{c}",
            "iss": "dev-court",
            "token_sha256": "0" * 64,
            "number": _case_number(c),
            "court": "D.D.C.",
            "agency": AGENCIES[c % len(AGENCIES)],
            "max_disclosures": 5000,
            "disclosures_used": 0,
            "first_seen_at": T0,
        }
        for c in range(CASES)
    ]


def _fast_leaf(i: int, n: int) -> tuple[dict[str, object], bytes]:
    item = leaf(i, n)
    obj: dict[str, object] = {
        "index": i,
        "time": format_time(item.time or T0),
        "request_id": item.request_id,
        "requester_id": item.requester_id,
        "agency": item.agency,
        "role": item.role,
        "case_jti": item.case_jti,
        "case_number_hash": item.case_number_hash,
        "statute": item.statute,
        "outcome": item.outcome,
        "reason_codes": list(item.reason_codes),
        "subject_ref": item.subject_ref,
        "policy_version": item.policy_version,
    }
    # For ASCII strings, integers, null and lists, sorted compact JSON is RFC 8785.
    return obj, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _row(i: int, obj: dict[str, object], data: bytes, h: bytes) -> dict[str, object]:
    reasons = obj["reason_codes"]
    assert isinstance(reasons, list)
    return {
        "leaf_index": i,
        "time": obj["time"],
        "day": parse_time(str(obj["time"])).date(),
        "agency": obj["agency"],
        "statute": obj["statute"],
        "outcome": obj["outcome"],
        "reason": reasons[0] if reasons else "",
        "case_jti": obj["case_jti"],
        "subject_ref": obj["subject_ref"],
        "leaf_json": data,
        "leaf_hash": h,
    }


def child_report(url: str, keys: str, fmt: str, out: str) -> None:
    """Runs in a fresh process: build + render + sign one report, print timing as JSON."""
    from taxaddr.reports.compliance import write_compliance_report
    from taxaddr.services import opened_services

    settings = Settings(env="test", database_url=url, keys_dir=Path(keys))
    start = time.perf_counter()
    with opened_services(settings) as s:
        result = write_compliance_report(
            s.engine,
            s.keystore,
            settings,
            from_day=T0.date(),
            to_day=T0.date() + timedelta(days=DAYS - 1),
            fmt=fmt,
            out=Path(out),
        )
    elapsed = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "peak_rss_mb": rss_mb,
                "requests": result.report["totals"]["requests"],
                "rows": len(result.report["rows"]),
                "bytes": len(result.data),
            }
        )
    )


def child_verify(url: str, keys: str, path: str) -> None:
    from taxaddr.reports.compliance import verify_report_file
    from taxaddr.services import opened_services

    settings = Settings(env="test", database_url=url, keys_dir=Path(keys))
    start = time.perf_counter()
    with opened_services(settings) as s:
        check = verify_report_file(s.engine, s.keystore, settings, Path(path))
    elapsed = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": rss_mb, "ok": check.ok}))


def run_child(*args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def populate_metrics() -> int:
    """Every label combination the bounded sets allow; returns the series count."""
    from taxaddr import metrics

    series = 0
    agencies = (*AGENCIES, metrics.OTHER)
    for agency in agencies:
        for outcome in ("disclosed", "denied", "no_match", "error"):
            for reason in ("none", *CODE_ORDER):
                metrics.DISCLOSURE_REQUESTS.labels(
                    agency=agency, outcome=outcome, reason=reason
                ).inc()
                series += 1
        for statute in (*STATUTES, metrics.OTHER):
            metrics.DISCLOSURES.labels(agency=agency, statute=statute).inc()
            series += 1
    for engine in ("embedded", "opa"):
        for result in ("allow", "deny", "error"):
            metrics.POLICY_DECISIONS.labels(engine=engine, result=result).inc()
            series += 1
    for i in range(1000):
        metrics.POLICY_SECONDS.observe(i * 1e-5)
        metrics.REQUEST_SECONDS.observe(i * 1e-3)
    metrics.AUDIT_TREE_SIZE.set(1)
    metrics.AUDIT_VERIFICATION_OK.set(1)
    return series


def bench_scrape(url: str, scrapes: int) -> tuple[float, float, int, int]:
    from taxaddr import metrics
    from taxaddr.oversight.exposition import exposition

    series = populate_metrics()
    engine = make_engine(url)
    times = []
    size = 0
    for _ in range(scrapes):
        start = time.perf_counter()
        with Session(engine) as session:
            metrics.AUDIT_TREE_SIZE.set(read_head(session).tree_size)
        body = exposition()
        times.append(time.perf_counter() - start)
        size = len(body)
    engine.dispose()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], series, size


def bench_http_scrape(url: str, keys: Path, root: Path, scrapes: int) -> tuple[float, float]:
    """GET /metrics from the real mTLS server (monitor identity, keep-alive connection)."""
    import ssl

    import httpx

    from taxaddr.api.app import create_app
    from taxaddr.api.runtime import dispose_engines, engine_for, keystore_for
    from taxaddr.api.server import ServerThread, make_config
    from taxaddr.crypto import pki
    from taxaddr.disclosure.identity import add_requester

    settings = Settings(env="test", database_url=url, keys_dir=keys, policy_dir=REPO / "policies")
    keystore = keystore_for(settings)
    monitor_id = f"bench-monitor-{uuid.uuid4().hex[:8]}"
    issued = pki.issue_cert(keystore.files.client_ca(), monitor_id, server=False)
    cert, key = root / "monitor.crt", root / "monitor.key"
    cert.write_bytes(issued.cert_pem())
    key.write_bytes(issued.key_pem())
    with write_transaction(engine_for(settings)) as session:
        add_requester(
            session,
            requester_id=monitor_id,
            agency="OPS",
            role="monitor",
            cert=issued.cert,
            actor=cli_actor(),
        )
    app = create_app(settings)
    thread = ServerThread(make_config(settings, app, keystore, port=0))
    thread.start()
    ctx = ssl.create_default_context(cafile=str(keystore.files.server_ca_path))
    ctx.load_cert_chain(str(cert), str(key))
    times = []
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{thread.port}", verify=ctx) as client:
            client.get("/metrics").raise_for_status()
            # The first scrape starts the background log verification (tens of seconds
            # at 1M leaves, at most hourly); measure scrapes after it, as in steady state.
            while app.state.verification_monitor.running:
                time.sleep(0.5)
            for _ in range(scrapes):
                start = time.perf_counter()
                client.get("/metrics").raise_for_status()
                times.append(time.perf_counter() - start)
    finally:
        thread.stop()
        dispose_engines()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="directory to keep (and reuse) the built log")
    parser.add_argument(
        "--proposed-indexes",
        action="store_true",
        help="first add the two indexes docs/oversight.md proposes for the audit table",
    )
    parser.add_argument("--skip-verify", action="store_true", help="skip step 2")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if quick():
        args.leaves, args.scrapes = min(args.leaves, 100_000), min(args.scrapes, 50)
    if args.child:
        kind, *rest = args.child
        if kind == "report":
            child_report(*rest)
        else:
            child_verify(*rest)
        return

    root = args.keep or Path(tempfile.mkdtemp(prefix="taxaddr-bench-reports-"))
    root.mkdir(parents=True, exist_ok=True)
    db = root / f"log-{args.leaves}.db"
    url = f"sqlite:///{db}"
    keys = root / "keys"
    init_dev_keys(keys)
    if not db.exists():
        upgrade(url)
        print(f"building a {args.leaves:,}-leaf audit log in {root} ...", flush=True)
        built = build(url, args.leaves)
        print(f"built in {built:.1f} s ({args.leaves / built:,.0f} leaves/s)")
    if args.proposed_indexes:
        start = time.perf_counter()
        engine = make_engine(url)
        with engine.begin() as conn:
            for ddl in PROPOSED_INDEXES:
                conn.exec_driver_sql(ddl)
        engine.dispose()
        print(f"proposed indexes present ({time.perf_counter() - start:.1f} s)")
    print(f"database: {db.stat().st_size / 2**20:.0f} MB on disk")

    print("\n1. compliance report over the whole log (fresh process each):")
    for fmt in ("json", "csv", "pdf"):
        out = root / f"report.{fmt}"
        r = run_child("--child", "report", url, str(keys), fmt, str(out))
        verdict = "ok" if r["seconds"] <= 10 and r["peak_rss_mb"] <= 500 else "OVER TARGET"
        print(
            f"  {fmt:4}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
            f"{int(r['requests']):,} requests in {int(r['rows']):,} rows, "
            f"{int(r['bytes']):,} bytes  [{verdict}; target <= 10 s, <= 500 MB]"
        )
        emit(f"compliance report ({fmt}), {args.leaves:,} leaves", r["seconds"], "s",
             limit="<= 10 s, <= 500 MB RSS",
             ok=r["seconds"] <= 10 and r["peak_rss_mb"] <= 500)  # fmt: skip

    if not args.skip_verify:
        print("\n2. report verify (recount from leaf JSON + root recomputation):")
        v = run_child("--child", "verify", url, str(keys), str(root / "report.json"))
        print(f"  json: {v['seconds']:.2f} s, peak RSS {v['peak_rss_mb']:.0f} MB, ok={v['ok']}")

    print("\n3. /metrics scrape work with every label combination populated:")
    median, p95, series, size = bench_scrape(url, args.scrapes)
    verdict = "ok" if p95 <= 0.050 else "OVER TARGET"
    print(
        f"  {series:,} labelled series, {size:,} bytes: median {median * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms over {args.scrapes} scrapes  [{verdict}; target <= 50 ms]"
    )
    median, p95 = bench_http_scrape(url, keys, root, args.scrapes)
    verdict = "ok" if p95 <= 0.050 else "OVER TARGET"
    print(
        f"  GET /metrics over mTLS (real server, monitor cert): median {median * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms  [{verdict}; target <= 50 ms]"
    )
    emit("GET /metrics over mTLS, p95", p95 * 1000, "ms", limit="<= 50 ms", ok=p95 <= 0.050)
    if not args.keep:
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        root.rmdir()


if __name__ == "__main__":
    main()
