"""Compliance reports: content, the three formats, signatures, and verification against the log."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text, update
from sqlalchemy.orm import Session

from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.db.schema import AuditLeaf
from taxaddr.errors import UsageError
from taxaddr.reports import document, signing
from taxaddr.reports.compliance import (
    UnknownCase,
    build_report,
    signed_report,
    verify_report,
)
from tests.oversight.oversight_seed import CASE_A, NAMES, STREETS, TINS

NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC)
PERIOD = {"from_day": date(2026, 11, 2), "to_day": date(2026, 11, 4)}


def _signed(engine: Engine, keystore: FileKeyStore, settings: Settings, fmt: str, **kw: object):
    with write_transaction(engine) as session:
        return signed_report(session, keystore, settings, fmt=fmt, now=NOW, **PERIOD, **kw)  # type: ignore[arg-type]


def _verify(engine: Engine, keystore: FileKeyStore, settings: Settings, data: bytes, sig: str):
    with Session(engine) as session:
        return verify_report(session, keystore, settings, data, sig)


def test_report_content(seeded: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    with write_transaction(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, **PERIOD)
    assert report["period"] == {"from": "2026-11-02", "to": "2026-11-04"}
    assert report["generated_at"] == "2026-11-25T16:00:00Z"
    assert report["case_filter"] is None
    assert report["checkpoint"]["tree_size"] == 10
    assert len(bytes.fromhex(report["checkpoint"]["root_hash"])) == 32
    assert report["checkpoint"]["signed_note"].startswith(f"{settings.audit_origin}\n10\n")
    assert report["totals"] == {
        "requests": 8,
        "disclosed": 4,
        "denied": 3,
        "no_match": 1,
        "error": 0,
    }
    assert report["distinct_subjects"] == 3
    assert len(report["rows"]) == 7
    assert sum(r["count"] for r in report["rows"]) == 8
    assert report["cases"] == [
        {"number": "1:26-cr-00123", "court": "D.D.C.", "disclosures": 4, "max_disclosures": 5},
        {"number": "2:26-cr-00456", "court": "S.D.N.Y.", "disclosures": 1, "max_disclosures": 2},
    ]


def test_report_for_one_case(seeded: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    with write_transaction(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, case_number=CASE_A[0], **PERIOD)
        with pytest.raises(UnknownCase):
            build_report(session, keystore, settings, case_number="9:99-cr-99999", **PERIOD)
    assert report["case_filter"] == CASE_A[0]
    assert report["totals"] == {
        "requests": 4,
        "disclosed": 3,
        "denied": 1,
        "no_match": 0,
        "error": 0,
    }
    assert report["distinct_subjects"] == 2
    assert report["cases"] == [
        {"number": "1:26-cr-00123", "court": "D.D.C.", "disclosures": 4, "max_disclosures": 5}
    ]
    assert {r["agency"] for r in report["rows"]} == {"ICE-HSI"}


def test_report_counts_only_leaves_under_its_checkpoint(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    """A leaf appended after the checkpoint was taken is not in the report."""
    first = _signed(seeded, keystore, settings, "json")
    from taxaddr.audit.log import bulk_append
    from tests.oversight.oversight_seed import EVENTS, leaf_input

    with write_transaction(seeded) as session:
        bulk_append(session, [leaf_input(EVENTS[0], keystore.pseudonym_key())])
    # The first report still verifies: its counts are pinned to tree size 10.
    check = _verify(seeded, keystore, settings, first.data, first.signature)
    assert check.ok, check.problems
    second = _signed(seeded, keystore, settings, "json")
    assert second.report["checkpoint"]["tree_size"] == 11
    assert second.report["totals"]["disclosed"] == 5


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_every_format_round_trips_and_verifies(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, fmt: str
) -> None:
    result = _signed(seeded, keystore, settings, fmt)
    assert document.parse(result.data) == result.report
    assert document.render(result.report, fmt) == result.data  # deterministic
    raw = base64.b64decode(result.signature, validate=True)
    keystore.report_signing_key().public_key().verify(raw, result.data)
    check = _verify(seeded, keystore, settings, result.data, result.signature)
    assert check.ok, check.problems
    assert "8 requests (4 disclosed)" in check.summary


def test_json_is_canonical(seeded: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    result = _signed(seeded, keystore, settings, "json")
    parsed = json.loads(result.data)
    assert (
        result.data
        == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_csv_sections(seeded: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    lines = _signed(seeded, keystore, settings, "csv").data.decode().splitlines()
    assert "totals,requests,disclosed,denied,no_match,error" in lines
    assert "totals,8,4,3,1,0" in lines
    assert "rows,2026-11-02,ICE-HSI,8 U.S.C. 1326,disclosed,,2" in lines
    assert "cases,1:26-cr-00123,D.D.C.,4,5" in lines
    assert "report,distinct_subjects,3" in lines


def test_pdf_shows_totals_as_text(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(_signed(seeded, keystore, settings, "pdf").data)
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    for line in (
        "Total requests: 8",
        "Disclosed: 4",
        "Denied: 3",
        "No unique match: 1",
        "Error: 0",
        "Period: 2026-11-02 to 2026-11-04",
        "(disclosed, by pseudonym): 3",
    ):
        assert line in out
    assert "1:26-cr-00123" in out
    assert "statute_not_criminal" in out


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_reports_hold_no_tin_name_or_address(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, fmt: str, tmp_path: Path
) -> None:
    data = _signed(seeded, keystore, settings, fmt).data
    texts = [data.decode("latin-1")]
    if fmt == "pdf":
        path = tmp_path / "r.pdf"
        path.write_bytes(data)
        pdftext = subprocess.run(
            ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
        )
        texts.append(pdftext.stdout)
        texts.append(document.to_json(document.from_pdf(data)).decode())
    for blob in texts:
        for needle in (*TINS, *(t.replace("-", "") for t in TINS), *NAMES, *STREETS):
            assert needle not in blob


# -- tampering ----------------------------------------------------------------------------


def test_edited_byte_fails_the_signature(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    result = _signed(seeded, keystore, settings, "csv")
    tampered = result.data.replace(b"totals,8,4,3,1,0", b"totals,8,4,3,1,1")
    assert tampered != result.data
    check = _verify(seeded, keystore, settings, tampered, result.signature)
    assert not check.ok
    assert check.problems[0].startswith("signature:")


def test_signature_by_another_key_fails(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    result = _signed(seeded, keystore, settings, "json")
    other = signing.sign(result.data, Ed25519PrivateKey.generate())
    check = _verify(seeded, keystore, settings, result.data, other)
    assert not check.ok
    assert check.problems[0].startswith("signature:")
    for garbage in ("", "not base64!", base64.b64encode(b"short").decode(), other + "\n" + other):
        assert not _verify(seeded, keystore, settings, result.data, garbage).ok


def _resign(report: dict, keystore: FileKeyStore, fmt: str = "json") -> tuple[bytes, str]:
    """What a generator with the key but wrong numbers would produce."""
    data = document.render(report, fmt)
    return data, signing.sign(data, keystore.report_signing_key())


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_edited_count_is_named(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, fmt: str
) -> None:
    report = _signed(seeded, keystore, settings, "json").report
    report["totals"]["disclosed"] = 5
    data, sig = _resign(report, keystore, fmt)
    check = _verify(seeded, keystore, settings, data, sig)
    assert not check.ok
    assert check.problems == ["totals.disclosed: report 5, audit log 4"]


def test_edited_row_subjects_and_case_are_named(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    report = _signed(seeded, keystore, settings, "json").report
    report["rows"][0]["count"] += 1
    report["totals"]["requests"] += 1
    report["totals"]["denied"] += 1
    report["distinct_subjects"] = 1
    report["cases"][0]["disclosures"] = 1
    data, sig = _resign(report, keystore)
    problems = _verify(seeded, keystore, settings, data, sig).problems
    assert "totals.requests: report 9, audit log 8" in problems
    assert "totals.denied: report 4, audit log 3" in problems
    assert "distinct_subjects: report 1, audit log 3" in problems
    assert any(
        p.startswith("rows[2026-11-02 ICE-HSI 8 U.S.C. 1227 denied statute_not_criminal]: report 2")
        for p in problems
    )
    assert any(p.startswith("cases[1:26-cr-00123]: report says 1 of 5") for p in problems)


def test_edited_checkpoint_is_named(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    report = _signed(seeded, keystore, settings, "json").report
    bad_size = json.loads(json.dumps(report))
    bad_size["checkpoint"]["tree_size"] = 9
    assert _verify(seeded, keystore, settings, *_resign(bad_size, keystore)).problems == [
        "checkpoint.tree_size: differs from the signed note"
    ]
    bad_root = json.loads(json.dumps(report))
    bad_root["checkpoint"]["root_hash"] = "00" * 32
    assert _verify(seeded, keystore, settings, *_resign(bad_root, keystore)).problems == [
        "checkpoint.root_hash: differs from the signed note"
    ]
    forged = json.loads(json.dumps(report))
    forged["checkpoint"]["signed_note"] = report["checkpoint"]["signed_note"].replace(
        "\n10\n", "\n11\n"
    )
    problems = _verify(seeded, keystore, settings, *_resign(forged, keystore)).problems
    assert problems[0].startswith("checkpoint: signed note does not verify")


def test_tampered_leaf_json_breaks_the_root(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    result = _signed(seeded, keystore, settings, "json")
    with write_transaction(seeded) as session:
        data = session.execute(
            text("SELECT leaf_json FROM audit_leaves WHERE leaf_index = 2")
        ).scalar_one()
        session.execute(
            update(AuditLeaf)
            .where(AuditLeaf.leaf_index == 2)
            .values(leaf_json=bytes(data).replace(b'"denied"', b'"disclosed"'))
        )
    check = _verify(seeded, keystore, settings, result.data, result.signature)
    assert check.problems == [
        "checkpoint.root_hash: audit log leaves 0..9 do not hash to the report's signed root"
    ]


def test_tampered_index_column_is_caught_by_recount(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    """The report is built from the indexed columns; verify recounts from the leaf JSON."""
    with write_transaction(seeded) as session:
        session.execute(
            update(AuditLeaf).where(AuditLeaf.leaf_index == 2).values(outcome="disclosed")
        )
    result = _signed(seeded, keystore, settings, "json")
    problems = _verify(seeded, keystore, settings, result.data, result.signature).problems
    assert "totals.disclosed: report 5, audit log 4" in problems


def test_unreadable_report_is_named(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    for data in (b"{not json", b"%PDF-1.4 nothing embedded", b"a,b\n1,2\n", b'{"period": 1}'):
        sig = signing.sign(data, keystore.report_signing_key())
        check = _verify(seeded, keystore, settings, data, sig)
        assert not check.ok
        assert check.problems[0].startswith("format:")


def test_report_pinned_to_an_older_checkpoint_ignores_newer_leaves(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    """When the log grew after the checkpoint, counts still stop at its tree size."""
    from taxaddr.audit.log import bulk_append
    from taxaddr.audit.service import latest_checkpoint
    from tests.oversight.oversight_seed import EVENTS, leaf_input

    with write_transaction(seeded) as session:
        note = latest_checkpoint(session, keystore, settings)
        bulk_append(session, [leaf_input(EVENTS[0], keystore.pseudonym_key())] * 3)
    with Session(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, note=note, **PERIOD)
    assert report["checkpoint"]["tree_size"] == 10
    assert report["totals"]["disclosed"] == 4
    assert report["distinct_subjects"] == 3
    assert report["cases"][0]["disclosures"] == 4
    data, sig = _resign(report, keystore)
    assert _verify(seeded, keystore, settings, data, sig).ok


def test_produce_report_on_each_backend(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    """The API/CLI path: short checkpoint transaction, then a read snapshot."""
    from taxaddr.reports.compliance import produce_report

    result = produce_report(seeded, keystore, settings, fmt="csv", **PERIOD)
    assert result.report["totals"]["requests"] == 8
    assert result.report["distinct_subjects"] == 3
    assert _verify(seeded, keystore, settings, result.data, result.signature).ok
    with pytest.raises(UsageError):
        produce_report(seeded, keystore, settings, fmt="docx", **PERIOD)


def test_truncated_log_is_named(seeded: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    result = _signed(seeded, keystore, settings, "json")
    with write_transaction(seeded) as session:
        session.execute(text("DELETE FROM audit_leaves WHERE leaf_index >= 7"))
    check = _verify(seeded, keystore, settings, result.data, result.signature)
    assert check.problems == [
        "checkpoint.tree_size: the audit log holds 7 leaves, the report cites 10"
    ]
    with write_transaction(seeded) as session:
        session.execute(text("DELETE FROM audit_leaves WHERE leaf_index = 3"))
    check = _verify(seeded, keystore, settings, result.data, result.signature)
    assert check.problems == ["audit log: leaf 3 is missing"]
