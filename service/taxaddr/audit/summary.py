"""The oversight summary: counts by day, agency, statute, outcome and reason.

``summarize`` answers ``GET /v1/oversight/summary`` with the contract's JSON::

    {"from", "to", "totals": {"requests", "disclosed", "denied", "no_match", "error"},
     "rows": [{"day", "agency", "statute", "outcome", "reason", "count"}]}

It aggregates in SQL over the audit log's denormalized columns (one GROUP BY,
served by their indexes). ``reason`` is the first (answered) reason code, or
``null`` for a disclosure.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from taxaddr.audit.queries import aggregate_rows, totals
from taxaddr.errors import RequestInvalid

MAX_PERIOD_DAYS = 3660


def summarize(session: Session, from_day: date, to_day: date) -> dict[str, Any]:
    """The contract's summary JSON for the UTC days ``from_day``..``to_day`` (inclusive)."""
    check_period(from_day, to_day)
    rows = aggregate_rows(session, from_day, to_day)
    return {
        "from": from_day.isoformat(),
        "to": to_day.isoformat(),
        "totals": totals(rows),
        "rows": [row.as_dict() for row in rows],
    }


def check_period(from_day: date, to_day: date) -> None:
    if from_day > to_day:
        raise RequestInvalid("'from' is after 'to'")
    if (to_day - from_day).days > MAX_PERIOD_DAYS:
        raise RequestInvalid(f"period is longer than {MAX_PERIOD_DAYS} days")


def parse_day(text: str | None, name: str) -> date:
    """A ``YYYY-MM-DD`` UTC day; anything else is ``request_invalid`` naming the field."""
    if not text:
        raise RequestInvalid(f"'{name}' is required (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or len(text) != 10:
        raise RequestInvalid(f"'{name}' is not a date (YYYY-MM-DD)")
    return day
