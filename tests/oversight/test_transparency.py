"""The public transparency report: small-cell suppression that totals cannot undo, the
three formats signed and verified against the log, no case numbers or requester ids."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.reports import signing, transparency
from taxaddr.reports.compliance import verify_report_file, write_transparency_report
from tests.oversight.oversight_e2e import RunningServer, Script, World
from tests.oversight.oversight_seed import CASE_A, NAMES, STREETS, TINS

PERIOD = {"from_day": date(2026, 11, 2), "to_day": date(2026, 11, 4)}


def test_suppression_and_totals_that_cannot_undo_it() -> None:
    cells = {
        ("FBI", "18 U.S.C. 1028", "disclosed"): 12,
        ("FBI", "18 U.S.C. 1028", "denied"): 3,
        ("ICE-HSI", "8 U.S.C. 1326", "disclosed"): 40,
        ("ICE-HSI", "8 U.S.C. 1326", "denied"): 25,
    }
    rows, totals = transparency.publish(cells, 10)
    counts = {(r["agency"], r["outcome"]): r["count"] for r in rows}
    assert counts[("FBI", "denied")] == "<10"
    assert counts[("FBI", "disclosed")] == 12
    # denied has a hidden cell: its total is a lower bound, so 25 + ? cannot be undone
    assert totals["denied"] == ">=25"
    assert totals["disclosed"] == 52
    assert totals["requests"] == ">=77"
    _rows, clean = transparency.publish({k: v for k, v in cells.items() if v >= 10}, 10)
    assert clean["requests"] == 77


def test_report_formats_sign_and_verify(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, tmp_path: Path
) -> None:
    for fmt in ("json", "csv", "pdf"):
        out = tmp_path / f"t.{fmt}"
        report = write_transparency_report(
            seeded, keystore, settings, threshold=2, fmt=fmt, out=out, **PERIOD
        )
        assert report["threshold"] == 2
        assert report["checkpoint"]["tree_size"] > 0
        text = json.dumps(report)
        for secret in (*TINS, *NAMES, *STREETS, CASE_A[0], "agent-"):
            assert secret not in text
        assert transparency.parse(out.read_bytes())["rows"] == report["rows"]
        check = verify_report_file(seeded, keystore, settings, out)
        assert check.ok, check.problems


def test_an_edited_cell_fails_verification(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    with write_transaction(seeded) as session:
        report = transparency.build_transparency(session, keystore, settings, threshold=1, **PERIOD)
    report["rows"][0]["count"] = report["rows"][0]["count"] + 1
    data = transparency.render(report, "json")
    sig = signing.sign(data, keystore.report_signing_key())
    with Session(seeded) as session:
        problems = transparency.verify_transparency(session, keystore, settings, data, sig)
    assert problems
    assert "rows: differ from the audit log" in problems
    with Session(seeded) as session:
        wrong = transparency.verify_transparency(session, keystore, settings, data, "AAAA")
    assert wrong[0].startswith("signature:")


def test_transparency_endpoint_for_oversight(
    server: RunningServer, world: World, script: Script
) -> None:
    with server.client(world.identities["overseer"]) as client:
        today = client.get(
            "/v1/oversight/summary", params={"from": "2026-01-01", "to": "2026-12-31"}
        )
        assert today.status_code == 200
        answer = client.get(
            "/v1/reports/transparency",
            params={"from": "2026-01-01", "to": "2026-12-31", "format": "json"},
        )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["threshold"] == 10
    assert all(isinstance(r["count"], int) or r["count"] == "<10" for r in report["rows"])
    assert "X-Signature" in answer.headers
    with server.client(world.identities["agent-1"]) as client:
        refused = client.get(
            "/v1/reports/transparency", params={"from": "2026-01-01", "to": "2026-12-31"}
        )
    assert refused.status_code == 403


@pytest.mark.parametrize("threshold", [0, -1])
def test_a_threshold_below_one_is_refused(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, threshold: int
) -> None:
    from taxaddr.errors import UsageError

    with pytest.raises(UsageError), write_transaction(seeded) as session:
        transparency.build_transparency(session, keystore, settings, threshold=threshold, **PERIOD)
