"""SQL aggregations over the audit log's denormalized, indexed leaf columns.

Oversight only ever counts: every query here groups or counts and returns
agencies, statutes, outcomes, reason codes, days and numbers, never a subject
pseudonym. ``below`` bounds the leaves to a tree size (``leaf_index < below``)
so that a report is consistent with the checkpoint it cites even while the log
grows; ``case_jtis`` restricts to the leaves of some case references.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from taxaddr.audit.models import AuditLeaf
from taxaddr.cases.models import CaseReference

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
    conds: list[ColumnElement[bool]] = [AuditLeaf.day >= from_day, AuditLeaf.day <= to_day]
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
    rows = [
        Row(
            day=_day(day),
            agency=agency,
            statute=statute,
            outcome=outcome,
            reason=reason or None,
            count=int(count),
        )
        for day, agency, statute, outcome, reason, count in session.execute(stmt)
    ]
    rows.sort(key=Row.sort_key)
    return rows


def totals(rows: Sequence[Row] | Sequence[dict[str, Any]]) -> dict[str, int]:
    """``{"requests", "disclosed", "denied", "no_match", "error"}`` from grouped rows."""
    result = {"requests": 0, **dict.fromkeys(OUTCOMES, 0)}
    for row in rows:
        data = row.as_dict() if isinstance(row, Row) else row
        result["requests"] += data["count"]
        if data["outcome"] in result:
            result[data["outcome"]] += data["count"]
    return result


def distinct_disclosed_subjects(
    session: Session,
    from_day: date,
    to_day: date,
    *,
    below: int | None = None,
    case_jtis: Collection[str] | None = None,
) -> int:
    """How many distinct taxpayers (by pseudonym) had an address disclosed.

    Counted in Python over the streamed pseudonyms: SQLite's COUNT(DISTINCT) builds
    a temporary B-tree and is several times slower at a million leaves. Only the
    count leaves this function.
    """
    if case_jtis is not None and not case_jtis:
        return 0
    stmt = (
        select(AuditLeaf.subject_ref)
        .where(
            *_filters(from_day, to_day, below, case_jtis),
            AuditLeaf.outcome == "disclosed",
            AuditLeaf.subject_ref.is_not(None),
        )
        .execution_options(yield_per=20_000)
    )
    return len(set(session.scalars(stmt)))


def case_jtis_in_period(
    session: Session,
    from_day: date,
    to_day: date,
    *,
    below: int | None = None,
) -> set[str]:
    stmt = (
        select(AuditLeaf.case_jti)
        .where(*_filters(from_day, to_day, below, None), AuditLeaf.case_jti.is_not(None))
        .distinct()
    )
    return {jti for (jti,) in session.execute(stmt) if jti is not None}


def disclosures_per_case(
    session: Session, jtis: Collection[str], *, below: int | None = None
) -> dict[str, int]:
    """Disclosed leaves per case reference over the whole log (below ``below``)."""
    if not jtis:
        return {}
    conds: list[ColumnElement[bool]] = [
        AuditLeaf.case_jti.in_(sorted(jtis)),
        AuditLeaf.outcome == "disclosed",
    ]
    if below is not None:
        conds.append(AuditLeaf.leaf_index < below)
    stmt = select(AuditLeaf.case_jti, func.count()).where(*conds).group_by(AuditLeaf.case_jti)
    return {str(jti): int(n) for jti, n in session.execute(stmt)}


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
