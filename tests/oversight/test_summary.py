"""The oversight summary, on seeded leaves, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit.summary import parse_day, summarize
from taxaddr.errors import RequestInvalid

EXPECTED_ROWS = [
    {
        "day": "2026-11-02",
        "agency": "ICE-HSI",
        "statute": "8 U.S.C. 1227",
        "outcome": "denied",
        "reason": "statute_not_criminal",
        "count": 1,
    },
    {
        "day": "2026-11-02",
        "agency": "ICE-HSI",
        "statute": "8 U.S.C. 1326",
        "outcome": "disclosed",
        "reason": None,
        "count": 2,
    },
    {
        "day": "2026-11-03",
        "agency": "FBI",
        "statute": "18 U.S.C. 1028",
        "outcome": "disclosed",
        "reason": None,
        "count": 1,
    },
    {
        "day": "2026-11-03",
        "agency": "FBI",
        "statute": "18 U.S.C. 1028",
        "outcome": "no_match",
        "reason": "no_unique_match",
        "count": 1,
    },
    {
        "day": "2026-11-03",
        "agency": "ICE-HSI",
        "statute": "8 U.S.C. 1326",
        "outcome": "disclosed",
        "reason": None,
        "count": 1,
    },
    {
        "day": "2026-11-04",
        "agency": "FBI",
        "statute": None,
        "outcome": "denied",
        "reason": "case_signature_invalid",
        "count": 1,
    },
    {
        "day": "2026-11-04",
        "agency": "FBI",
        "statute": "18 U.S.C. 1028",
        "outcome": "denied",
        "reason": "reason_insufficient",
        "count": 1,
    },
]


def test_summary_counts_the_period(seeded: Engine) -> None:
    with Session(seeded) as session:
        result = summarize(session, date(2026, 11, 2), date(2026, 11, 4))
    assert result["from"] == "2026-11-02"
    assert result["to"] == "2026-11-04"
    assert result["totals"] == {
        "requests": 8,
        "disclosed": 4,
        "denied": 3,
        "no_match": 1,
        "error": 0,
    }
    assert result["rows"] == EXPECTED_ROWS


def test_summary_days_are_inclusive_utc(seeded: Engine) -> None:
    with Session(seeded) as session:
        first = summarize(session, date(2026, 11, 1), date(2026, 11, 1))
        last = summarize(session, date(2026, 11, 5), date(2026, 11, 5))
        everything = summarize(session, date(2026, 1, 1), date(2026, 12, 31))
        empty = summarize(session, date(2025, 1, 1), date(2025, 1, 31))
    assert first["totals"]["requests"] == 1
    assert first["rows"][0]["day"] == "2026-11-01"
    assert last["totals"] == {"requests": 1, "disclosed": 0, "denied": 1, "no_match": 0, "error": 0}
    assert everything["totals"]["requests"] == 10
    assert empty == {
        "from": "2025-01-01",
        "to": "2025-01-31",
        "totals": {"requests": 0, "disclosed": 0, "denied": 0, "no_match": 0, "error": 0},
        "rows": [],
    }


def test_summary_rejects_reversed_or_huge_periods(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(RequestInvalid, match="after"):
            summarize(session, date(2026, 11, 5), date(2026, 11, 4))
        with pytest.raises(RequestInvalid, match="longer"):
            summarize(session, date(2000, 1, 1), date(2026, 1, 1))


@pytest.mark.parametrize("text", ["", None, "2026-13-01", "26-11-01", "2026-11-01T00:00", "x"])
def test_parse_day_refuses_non_dates(text: str | None) -> None:
    with pytest.raises(RequestInvalid):
        parse_day(text, "from")


def test_parse_day_accepts_a_day() -> None:
    assert parse_day("2026-11-02", "from") == date(2026, 11, 2)
