"""Report document edge cases: formats, malformed files, exposition modes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from taxaddr.errors import UsageError
from taxaddr.reports import document

REPORT = {
    "period": {"from": "2026-11-01", "to": "2026-11-30"},
    "case_filter": "1:26-cr-00123",
    "generated_at": "2026-11-25T16:00:00Z",
    "checkpoint": {
        "tree_size": 3,
        "root_hash": "ab" * 32,
        "signed_note": "o\n3\nq==\n\n\u2014 o x\n",
    },
    "totals": {"requests": 3, "disclosed": 1, "denied": 1, "no_match": 1, "error": 0},
    "distinct_subjects": 1,
    "rows": [
        {
            "day": "2026-11-02",
            "agency": "A",
            "statute": None,
            "outcome": "denied",
            "reason": "case_signature_invalid",
            "count": 1,
        },
        {
            "day": "2026-11-02",
            "agency": "A",
            "statute": "S\u00e9 \u2603",
            "outcome": "disclosed",
            "reason": None,
            "count": 1,
        },
        {
            "day": "2026-11-03",
            "agency": "A" * 80,
            "statute": "S",
            "outcome": "no_match",
            "reason": None,
            "count": 1,
        },
    ],
    "cases": [
        {"number": "1:26-cr-00123", "court": "D.D.C.", "disclosures": 1, "max_disclosures": 5}
    ],
}


@pytest.mark.parametrize("fmt", document.FORMATS)
def test_round_trip_with_unicode_nulls_and_long_values(fmt: str) -> None:
    data = document.render(REPORT, fmt)
    assert document.detect_format(data) == fmt
    assert document.parse(data) == REPORT
    assert document.parse(data, fmt) == REPORT


def test_empty_report_renders_every_format() -> None:
    empty = copy.deepcopy(REPORT)
    empty["rows"], empty["cases"] = [], []
    empty["totals"] = dict.fromkeys(document.OUTCOME_KEYS, 0)
    for fmt in document.FORMATS:
        assert document.parse(document.render(empty, fmt)) == empty


def test_long_pdf_breaks_pages_and_keeps_all_rows(tmp_path: Path) -> None:
    big = copy.deepcopy(REPORT)
    big["rows"] = [
        {
            "day": "2026-11-02",
            "agency": f"AG{i}",
            "statute": "S",
            "outcome": "denied",
            "reason": "reason_insufficient",
            "count": i,
        }
        for i in range(400)
    ]
    data = document.render(big, "pdf")
    assert data.count(b"/Type /Page\n") > 3
    assert document.from_pdf(data)["rows"] == big["rows"]


def test_unknown_formats() -> None:
    with pytest.raises(UsageError):
        document.render(REPORT, "xlsx")
    with pytest.raises(UsageError):
        document.parse(b"{}", "xlsx")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"[1, 2]",
        b'{"period": {"from": 1, "to": "x"}}',
        b"report,field,value\nreport,period_from,x\n",
        b"report,nope,value\n",
        b"totals,a\n",
        document.to_csv(REPORT).replace(b"totals,requests", b"totals,asked"),
        document.to_csv(REPORT).replace(b"rows,day", b"rows,date"),
        document.to_csv(REPORT).replace(b"cases,1:26-cr-00123,D.D.C.,1,5", b"cases,x,y,one,5"),
        document.to_csv(REPORT).replace(b"report,distinct_subjects,1", b"report,extra,1"),
        b"%PDF-1.7\n1 0 obj\n<</Type /EmbeddedFile /Filter /FlateDecode /Length 4>>"
        b"stream\nxxxx\nendstream",
        b"%PDF-1.7\n1 0 obj\n<</Type /EmbeddedFile>>stream\n{}\nendstream",
    ],
)
def test_malformed_reports_are_refused(data: bytes) -> None:
    with pytest.raises(document.ReportFormatError):
        document.parse(data)


def test_exposition_merges_worker_files_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import REGISTRY

    from taxaddr.oversight import exposition

    assert exposition.registry() is REGISTRY
    assert b"taxaddr_disclosures_total" in exposition.exposition()
    assert b"_created" not in exposition.exposition()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    merged = exposition.registry()
    assert merged is not REGISTRY
    assert exposition.exposition() == b""  # no worker has written a file yet
