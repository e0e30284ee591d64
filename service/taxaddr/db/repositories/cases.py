"""Case references: usage, the quota reservation, the verification lookup."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from taxaddr.db.driver import fetchone, statements
from taxaddr.db.engine import insert_ignore
from taxaddr.db.schema import CaseIssuer, CaseIssuerKey, CaseReference, case_references


def usage(session: Session, jti: str) -> int | None:
    """Disclosures made under ``jti``; None when it was never seen."""
    row = fetchone(session, statements(session).case_usage, (jti,))
    return None if row is None else int(row[0])


def reserve(
    session: Session, *, jti: str, iss: str, number: str, court: str, agency: str, maximum: int
) -> bool:
    """Take one disclosure from the quota of the row recorded for exactly these case
    facts; False when no row qualifies (unseen, other facts, or exhausted)."""
    params = (jti, iss, number, court, agency, maximum)
    return fetchone(session, statements(session).case_reserve, params) is not None


def key_and_revocation(session: Session, iss: str, kid: str, jti: str) -> tuple[Any, ...] | None:
    """In one round trip: ``(alg, public_key, not_before, not_after, key removed_at,
    issuer removed_at, jti revoked count, iss, number, court, agency, max_disclosures,
    disclosures_used)`` of the first case facts seen under ``jti`` and its usage now (NULLs
    if none); None without the key."""
    return fetchone(session, statements(session).case_key_and_revocation, (jti, jti, iss, kid))


def insert_case(session: Session, values: dict[str, Any]) -> bool:
    """Remember a case reference unless its jti is known; True if inserted."""
    return insert_ignore(session, CaseReference, values)


def case_facts(session: Session, jti: str) -> tuple[Any, ...]:
    """``(iss, number, court, agency, max_disclosures)`` first recorded under ``jti``."""
    c = case_references
    row = session.execute(
        select(c.c.iss, c.c.number, c.c.court, c.c.agency, c.c.max_disclosures).where(
            c.c.jti == jti
        )
    ).one()
    return tuple(row)


def all_cases(session: Session) -> list[Any]:
    """``(number, court, jti, disclosures_used, max_disclosures)`` of every case
    reference seen, by case number."""
    c = case_references
    query = select(
        c.c.number, c.c.court, c.c.jti, c.c.disclosures_used, c.c.max_disclosures
    ).order_by(c.c.number, c.c.jti)
    return list(session.execute(query).all())


# -- the trusted-issuer set (ORM entities: the registry edits them in place)

_Registered = TypeVar("_Registered", CaseIssuer, CaseIssuerKey)


def issuer_for_update(session: Session, iss: str) -> CaseIssuer | None:
    return session.get(CaseIssuer, iss, with_for_update=True)


def issuer_key_for_update(session: Session, iss: str, kid: str) -> CaseIssuerKey | None:
    return session.get(CaseIssuerKey, (iss, kid), with_for_update=True)


def issuer_keys_for_update(session: Session, iss: str) -> list[CaseIssuerKey]:
    """Every key of ``iss``, locked for this transaction."""
    query = select(CaseIssuerKey).where(CaseIssuerKey.iss == iss).with_for_update()
    return list(session.scalars(query).all())


def issuer_keys_with_issuer_removal(session: Session) -> list[Any]:
    """``(key, issuer removed_at)`` of every key ever registered, by issuer then kid."""
    return list(
        session.execute(
            select(CaseIssuerKey, CaseIssuer.removed_at)
            .join(CaseIssuer, CaseIssuer.id == CaseIssuerKey.iss)
            .order_by(CaseIssuerKey.iss, CaseIssuerKey.kid)
        ).all()
    )


def add(session: Session, row: _Registered) -> _Registered:
    """Add a new issuer or key row (written at once, so later reads see it)."""
    session.add(row)
    session.flush()
    return row
