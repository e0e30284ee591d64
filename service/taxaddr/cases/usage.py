"""Case-reference bookkeeping: first sighting, disclosure quota, listing for reports.

A case reference's quota belongs to its ``jti``. The facts stored are those of
the first verified token with that ``jti``; a later token reusing the ``jti``
with different case facts (issuer, case number, court, agency or quota) is
refused, so a quota can never be reset or raised by re-signing.

:func:`reserve_disclosure` runs inside the caller's write transaction as ONE
conditional statement on the hot path::

    UPDATE case_references SET disclosures_used = disclosures_used + 1
     WHERE jti = ? AND <the token's case facts> AND disclosures_used < max_disclosures
    RETURNING disclosures_used

On PostgreSQL the UPDATE locks the row and, when it waited for a concurrent
reservation, re-evaluates its WHERE clause against the committed row (READ
COMMITTED), so ``disclosures_used < max_disclosures`` is decided on the newest
count; on SQLite the caller's ``BEGIN IMMEDIATE`` (:func:`taxaddr.db.write_transaction`)
already serializes writers. Only when no row qualifies (first sighting, other case
facts, or an exhausted quota) does it fall back to :func:`record_case` and try once more.

The hot-path statements are compiled once per dialect (:mod:`taxaddr.db.statements`) and
run on the session's own DBAPI connection (same transaction) by
:mod:`taxaddr.db.repositories.cases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from taxaddr.cases.verify import VerifiedCase
from taxaddr.db.repositories import cases
from taxaddr.errors import CaseReferenceMalformed


@dataclass(frozen=True)
class CaseUsageRow:
    number: str
    court: str
    jti: str
    disclosures_used: int
    max_disclosures: int


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
    cases.insert_case(session, values)
    if cases.case_facts(session, vc.jti) != (
        vc.iss,
        vc.number,
        vc.court,
        vc.agency,
        vc.max_disclosures,
    ):
        raise CaseReferenceMalformed(
            "this jti is already in use for different case facts; the issuer must use a new jti"
        )


def usage(session: Session, jti: str) -> int:
    """Disclosures made so far under case reference ``jti`` (0 if never seen)."""
    return cases.usage(session, jti) or 0


def reserve_disclosure(session: Session, vc: VerifiedCase) -> bool:
    """Take one disclosure from the case's quota; False when it is exhausted.

    Call inside the caller's write transaction, which commits or rolls back the
    reservation together with the audit leaf. Raises :class:`CaseReferenceMalformed`
    when the jti was first recorded with other case facts.
    """
    if _reserve(session, vc):
        return True
    # No row qualified: first sighting (insert it), other facts (refused), or exhausted.
    record_case(session, vc)
    return _reserve(session, vc)


def _reserve(session: Session, vc: VerifiedCase) -> bool:
    return cases.reserve(
        session,
        jti=vc.jti,
        iss=vc.iss,
        number=vc.number,
        court=vc.court,
        agency=vc.agency,
        maximum=vc.max_disclosures,
    )


def list_cases(session: Session) -> list[CaseUsageRow]:
    """Every case reference seen, with its usage, by case number."""
    rows = cases.all_cases(session)
    return [CaseUsageRow(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]
