"""Background verification of the audit log, its gauge, and how the dashboard shows it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

from prometheus_client import REGISTRY
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.db.schema import AuditLeaf
from taxaddr.oversight.dashboard import CheckpointView, build_view, render_html
from taxaddr.oversight.verification import VerificationMonitor, VerificationResult, verify_now


def _gauge() -> float | None:
    return REGISTRY.get_sample_value("taxaddr_audit_verification_ok")


def test_verify_now_sets_the_gauge(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    ok = verify_now(seeded, keystore, settings)
    assert ok.ok
    assert ok.tree_size == 10
    assert _gauge() == 1.0
    with write_transaction(seeded) as session:
        session.execute(update(AuditLeaf).where(AuditLeaf.leaf_index == 3).values(leaf_json=b"{}"))
    bad = verify_now(seeded, keystore, settings)
    assert not bad.ok
    assert bad.first_bad_leaf == 3
    assert "leaf 3" in bad.message
    assert _gauge() == 0.0


def test_verify_now_fails_closed_when_the_log_is_unreadable(
    keystore: FileKeyStore, settings: Settings, tmp_path
) -> None:
    from taxaddr.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables at all
    result = verify_now(engine, keystore, settings)
    engine.dispose()
    assert not result.ok
    assert "could not run" in result.message
    assert _gauge() == 0.0


def _result(ok: bool, size: int) -> VerificationResult:
    return VerificationResult(ok, "m", size, None if ok else 1, datetime.now(UTC), 0.0)


def test_monitor_runs_once_then_caches_and_refreshes_when_stale() -> None:
    calls: list[int] = []
    done = threading.Event()

    def run() -> VerificationResult:
        calls.append(1)
        done.set()
        return VerificationResult(
            True, f"run {len(calls)}", 5, None, datetime.now(UTC), time.monotonic()
        )

    monitor = VerificationMonitor(run, max_age=3600)
    assert monitor.last is None
    first = monitor.current()
    assert len(calls) == 1
    assert monitor.current() is first  # cached, not stale
    assert monitor.current(tree_size=5) is first  # same size: no re-run
    assert not monitor.refresh_in_background()
    monitor.current(tree_size=6)  # the log grew and is small: verified on the spot
    assert len(calls) == 2
    monitor.max_age = 0.0
    done.clear()
    assert monitor.refresh_in_background()
    assert done.wait(10)
    for _ in range(100):
        if monitor.last is not None and monitor.last.message == "run 3":
            break
        threading.Event().wait(0.05)
    assert len(calls) == 3


def test_dashboard_shows_a_failed_verification(seeded: Engine) -> None:
    checkpoint = CheckpointView(10, "ab" * 32, "note\n", _result(False, 10))
    with Session(seeded) as session:
        view = build_view(session, date(2026, 11, 1), date(2026, 11, 5), checkpoint=checkpoint)
    html = render_html(view)
    assert "FAILED</span> at entry 1" in html
    assert 'data-total="requests">10<' in html
    assert 'data-total="disclosed">5<' in html
    # CASE_A used 4 of 5 (80 %: near its quota), CASE_B 1 of 2 (not near)
    assert "1:26-cr-00123" in html
    assert "2:26-cr-00456" not in html
    assert view.cases_total == 2
    assert [d.day for d in view.days] == [f"2026-11-0{i}" for i in range(1, 6)]
    assert view.reasons == [
        ("case_quota_exhausted", 1),
        ("case_signature_invalid", 1),
        ("no_unique_match", 1),
        ("reason_insufficient", 1),
        ("statute_not_criminal", 1),
    ]


def test_dashboard_empty_period(engine: Engine) -> None:
    checkpoint = CheckpointView(0, "00" * 32, "note\n", None)
    with Session(engine) as session:
        view = build_view(session, date(2026, 11, 1), date(2026, 11, 2), checkpoint=checkpoint)
    html = render_html(view)
    assert "No requests in this period." in html
    assert "nothing in this period" in html
    assert "not run yet" in html
