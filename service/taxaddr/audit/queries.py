"""SQL aggregations over the audit log's denormalized, indexed leaf columns.

Shared by the oversight views and the compliance reports (both import this
module; neither imports the other).

Oversight only ever counts: every query here groups or counts and returns
agencies, statutes, outcomes, reason codes, days and numbers, never a subject
pseudonym. ``below`` bounds the leaves to a tree size (``leaf_index < below``)
so that a report is consistent with the checkpoint it cites even while the log
grows; ``case_jtis`` restricts to the leaves of some case references.

Only leaf values that today's leaf guard passes are shown: a statute column of a
leaf written before statutes were restricted to known citations is counted under
``other`` (:func:`taxaddr.audit.leaf.display_statute`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from taxaddr.audit.leaf import ACCOUNTING_OUTCOME, NOT_REQUESTS, display_statute
from taxaddr.db.driver import stream_rows
from taxaddr.db.schema import AuditLeaf, CaseReference

OUTCOMES = ("disclosed", "denied", "no_match", "error")


@dataclass(frozen=True)
class Row:
    day: str
    agency: str
    statute: str | None
    outcome: str
    reason: str | None
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "agency": self.agency,
            "statute": self.statute,
            "outcome": self.outcome,
            "reason": self.reason,
            "count": self.count,
        }

    def sort_key(self) -> tuple[str, ...]:
        return row_sort_key(self.as_dict())


def row_sort_key(row: dict[str, Any]) -> tuple[str, ...]:
    """Deterministic order on both backends (SQL NULL ordering differs)."""
    return tuple(row[k] or "" for k in ("day", "agency", "statute", "outcome", "reason"))


def _filters(
    from_day: date,
    to_day: date,
    below: int | None,
    case_jtis: Collection[str] | None,
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [
        AuditLeaf.day >= from_day,
        AuditLeaf.day <= to_day,
        AuditLeaf.outcome.not_in(NOT_REQUESTS),  # trust changes, accounting lookups
    ]
    if below is not None:
        conds.append(AuditLeaf.leaf_index < below)
    if case_jtis is not None:
        conds.append(AuditLeaf.case_jti.in_(sorted(case_jtis)))
    return conds


def aggregate_rows(
    session: Session,
    from_day: date,
    to_day: date,
    *,
    below: int | None = None,
    case_jtis: Collection[str] | None = None,
) -> list[Row]:
    """Counts per (day, agency, statute, outcome, first reason), sorted."""
    if case_jtis is not None and not case_jtis:
        return []
    stmt = (
        select(
            AuditLeaf.day,
            AuditLeaf.agency,
            AuditLeaf.statute,
            AuditLeaf.outcome,
            AuditLeaf.reason,
            func.count(),
        )
        .where(*_filters(from_day, to_day, below, case_jtis))
        .group_by(
            AuditLeaf.day,
            AuditLeaf.agency,
            AuditLeaf.statute,
            AuditLeaf.outcome,
            AuditLeaf.reason,
        )
    )
    counts: dict[tuple[str, str, str | None, str, str | None], int] = {}
    for day, agency, statute, outcome, reason, count in session.execute(stmt):
        key = (_day(day), agency, display_statute(statute), outcome, reason or None)
        counts[key] = counts.get(key, 0) + int(count)
    rows = [Row(*key, count=count) for key, count in counts.items()]
    rows.sort(key=Row.sort_key)
    return rows


def accounting_lookups(session: Session, from_day: date, to_day: date) -> int:
    """Taxpayer-accounting lookups (leaves of outcome ``accounting``) on UTC days
    ``from_day``..``to_day``."""
    stmt = (
        select(func.count())
        .select_from(AuditLeaf)
        .where(AuditLeaf.day >= from_day, AuditLeaf.day <= to_day)
        .where(AuditLeaf.outcome == ACCOUNTING_OUTCOME)
    )
    return int(session.execute(stmt).scalar_one())


def totals(rows: Sequence[Row] | Sequence[dict[str, Any]]) -> dict[str, int]:
    """``{"requests", "disclosed", "denied", "no_match", "error"}`` from grouped rows."""
    result = {"requests": 0, **dict.fromkeys(OUTCOMES, 0)}
    for row in rows:
        data = row.as_dict() if isinstance(row, Row) else row
        result["requests"] += data["count"]
        if data["outcome"] in result:
            result[data["outcome"]] += data["count"]
    return result


@dataclass(frozen=True)
class PeriodFacts:
    """What a report needs beyond the grouped rows, from one pass over the leaves."""

    distinct_subjects: int
    jtis_in_period: set[str]
    disclosed_per_jti: dict[str, int]


def period_facts(
    session: Session,
    from_day: date,
    to_day: date,
    *,
    below: int | None = None,
    case_jtis: Collection[str] | None = None,
) -> PeriodFacts:
    """Distinct disclosed pseudonyms and case references in the period, and the
    disclosures of every case reference over the whole log, in one streamed pass.

    One sequential pass (or covering-index scan) over four narrow columns beats three
    aggregations that each look rows up by index; COUNT(DISTINCT) is also several
    times slower in SQLite than a Python set. Only counts leave this function.
    """
    if case_jtis is not None and not case_jtis:
        return PeriodFacts(0, set(), {})
    conds: list[ColumnElement[bool]] = [AuditLeaf.outcome.not_in(NOT_REQUESTS)]
    if below is not None:
        conds.append(AuditLeaf.leaf_index < below)
    if case_jtis is not None:
        conds.append(AuditLeaf.case_jti.in_(sorted(case_jtis)))
    stmt = select(
        AuditLeaf.case_jti, AuditLeaf.outcome, AuditLeaf.day, AuditLeaf.subject_ref
    ).where(*conds)
    lo, hi = from_day.isoformat(), to_day.isoformat()
    subjects: set[str] = set()
    jtis: set[str] = set()
    disclosed: dict[str, int] = {}
    for jti, outcome, day, subject in stream_rows(session, stmt):
        # raw driver values: the day is text on SQLite and a date on PostgreSQL
        text_day = day if isinstance(day, str) else day.isoformat()
        in_period = lo <= text_day[:10] <= hi
        if outcome == "disclosed":
            if jti is not None:
                disclosed[jti] = disclosed.get(jti, 0) + 1
            if in_period and subject is not None:
                subjects.add(subject)
        if in_period and jti is not None:
            jtis.add(jti)
    return PeriodFacts(len(subjects), jtis, disclosed)


@dataclass(frozen=True)
class CaseRef:
    jti: str
    number: str
    court: str
    max_disclosures: int
    disclosures_used: int


def case_refs(session: Session, jtis: Collection[str]) -> list[CaseRef]:
    """The recorded case references among ``jtis`` (unrecorded ones are skipped)."""
    if not jtis:
        return []
    stmt = select(
        CaseReference.jti,
        CaseReference.number,
        CaseReference.court,
        CaseReference.max_disclosures,
        CaseReference.disclosures_used,
    ).where(CaseReference.jti.in_(sorted(jtis)))
    return [CaseRef(*map(_plain, row)) for row in session.execute(stmt)]


def jtis_for_case_number(session: Session, number: str) -> set[str]:
    stmt = select(CaseReference.jti).where(CaseReference.number == number)
    return {jti for (jti,) in session.execute(stmt)}


def all_case_refs(session: Session) -> list[CaseRef]:
    stmt = select(
        CaseReference.jti,
        CaseReference.number,
        CaseReference.court,
        CaseReference.max_disclosures,
        CaseReference.disclosures_used,
    )
    return [CaseRef(*map(_plain, row)) for row in session.execute(stmt)]


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, int) else value


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)[:10]
