"""Periodic full verification of the audit log, for the dashboard and the alert gauge.

Verifying recomputes the whole tree from the stored leaf bytes, which takes
seconds on a large log, so it never runs on the scrape path: ``/metrics`` only
*starts* a refresh in a background thread when the last result is older than
``max_age`` seconds. The dashboard shows the last result (running it once,
synchronously, if there is none yet). Each result sets
``taxaddr_audit_verification_ok`` (1 ok, 0 failed), which the
``TaxaddrAuditVerificationFailed`` alert watches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from taxaddr import metrics
from taxaddr.audit.service import VerifyReport, verify_log
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import snapshot_session

# A full verification of a million leaves takes tens of seconds of CPU in the
# server process, so /metrics re-runs it at most hourly; the dashboard shows when
# the shown result was computed.
DEFAULT_MAX_AGE = 3600.0
# Below this many leaves a full verification takes well under a second, so the
# dashboard re-verifies on the spot when the log grew since the last result.
SYNC_LIMIT = 100_000


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    message: str
    tree_size: int
    first_bad_leaf: int | None
    checked_at: datetime
    monotonic: float


def verify_now(engine: Engine, keystore: KeyStore, settings: Settings) -> VerificationResult:
    try:
        with snapshot_session(engine) as session:
            report: VerifyReport = verify_log(session, keystore, settings)
    except Exception as exc:  # noqa: BLE001  (an unreadable log is a failed verification)
        report = VerifyReport(False, None, f"verification could not run ({type(exc).__name__})")
    metrics.AUDIT_VERIFICATION_OK.set(1 if report.ok else 0)
    return VerificationResult(
        ok=report.ok,
        message=report.message,
        tree_size=report.tree_size,
        first_bad_leaf=report.first_bad_leaf,
        checked_at=datetime.now(UTC),
        monotonic=time.monotonic(),
    )


class VerificationMonitor:
    """Caches the last verification; refreshes it at most once per ``max_age`` seconds."""

    def __init__(
        self,
        run: Callable[[], VerificationResult],
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self._run = run
        self.max_age = max_age
        self._lock = threading.Lock()
        self._running = False
        self._last: VerificationResult | None = None

    @property
    def last(self) -> VerificationResult | None:
        return self._last

    @property
    def running(self) -> bool:
        return self._running

    def _stale(self) -> bool:
        last = self._last
        return last is None or time.monotonic() - last.monotonic >= self.max_age

    def current(self, tree_size: int | None = None) -> VerificationResult:
        """The last result; runs one synchronously if none exists yet, or if the log
        grew to ``tree_size`` since and is small enough to verify on the spot."""
        last = self._last
        if last is None or (
            tree_size is not None and last.tree_size != tree_size and tree_size <= SYNC_LIMIT
        ):
            return self._refresh()
        self.refresh_in_background()
        return last

    def refresh_in_background(self) -> bool:
        """Start a refresh thread if the result is stale and none is running."""
        with self._lock:
            if self._running or not self._stale():
                return False
            self._running = True
        threading.Thread(target=self._refresh_locked, name="audit-verify", daemon=True).start()
        return True

    def _refresh(self) -> VerificationResult:
        with self._lock:
            self._running = True
        return self._refresh_locked()

    def _refresh_locked(self) -> VerificationResult:
        try:
            result = self._run()
            self._last = result
            return result
        finally:
            with self._lock:
                self._running = False
