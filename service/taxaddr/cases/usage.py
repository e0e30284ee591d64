"""Case-reference bookkeeping: first sighting, disclosure quota, listing for reports.

A case reference's quota belongs to its ``jti``. The facts stored are those of
the first verified token with that ``jti``; a later token reusing the ``jti``
with different case facts (issuer, case number, court, agency or quota) is
refused, so a quota can never be reset or raised by re-signing.

:func:`reserve_disclosure` runs inside the caller's write transaction: on
PostgreSQL it locks the row (``SELECT ... FOR UPDATE``); on SQLite the caller's
``BEGIN IMMEDIATE`` (:func:`taxaddr.db.write_transaction`) already serializes writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from taxaddr.cases.models import CaseReference
from taxaddr.cases.verify import VerifiedCase
from taxaddr.db import Base
from taxaddr.errors import CaseReferenceMalformed


@dataclass(frozen=True)
class CaseUsageRow:
    number: str
    court: str
    jti: str
    disclosures_used: int
    max_disclosures: int


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT that does nothing if the primary key exists (both dialects); True if inserted."""
    if session.get_bind().dialect.name == "postgresql":
        pg_stmt = postgresql.insert(model).values(values).on_conflict_do_nothing()
        result = session.execute(pg_stmt)
    else:
        lite_stmt = sqlite.insert(model).values(values).on_conflict_do_nothing()
        result = session.execute(lite_stmt)
    return bool(getattr(result, "rowcount", 0))


def record_case(session: Session, vc: VerifiedCase, now: datetime | None = None) -> None:
    """Remember a verified case reference (insert once; later sightings must agree)."""
    values = {
        "jti": vc.jti,
        "iss": vc.iss,
        "token_sha256": vc.token_sha256,
        "number": vc.number,
        "court": vc.court,
        "agency": vc.agency,
        "max_disclosures": vc.max_disclosures,
        "disclosures_used": 0,
        "first_seen_at": now or datetime.now(UTC),
    }
    insert_ignore(session, CaseReference, values)
    row = session.execute(
        select(
            CaseReference.iss,
            CaseReference.number,
            CaseReference.court,
            CaseReference.agency,
            CaseReference.max_disclosures,
        ).where(CaseReference.jti == vc.jti)
    ).one()
    if tuple(row) != (vc.iss, vc.number, vc.court, vc.agency, vc.max_disclosures):
        raise CaseReferenceMalformed(
            "this jti is already in use for different case facts; the issuer must use a new jti"
        )


def usage(session: Session, jti: str) -> int:
    """Disclosures made so far under case reference ``jti`` (0 if never seen)."""
    used = session.scalar(select(CaseReference.disclosures_used).where(CaseReference.jti == jti))
    return int(used or 0)


def reserve_disclosure(session: Session, vc: VerifiedCase) -> bool:
    """Take one disclosure from the case's quota; False when it is exhausted.

    Call inside the caller's write transaction, which commits or rolls back the
    reservation together with the audit leaf.
    """
    record_case(session, vc)
    row = session.execute(
        select(CaseReference.disclosures_used, CaseReference.max_disclosures)
        .where(CaseReference.jti == vc.jti)
        .with_for_update()
    ).one()
    used, maximum = int(row[0]), int(row[1])
    if used >= maximum:
        return False
    session.execute(
        update(CaseReference)
        .where(CaseReference.jti == vc.jti)
        .values(disclosures_used=CaseReference.disclosures_used + 1)
    )
    return True


def list_cases(session: Session) -> list[CaseUsageRow]:
    """Every case reference seen, with its usage, by case number."""
    rows = session.execute(
        select(
            CaseReference.number,
            CaseReference.court,
            CaseReference.jti,
            CaseReference.disclosures_used,
            CaseReference.max_disclosures,
        ).order_by(CaseReference.number, CaseReference.jti)
    ).all()
    return [CaseUsageRow(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]

