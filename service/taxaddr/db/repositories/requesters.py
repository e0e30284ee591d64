"""Requesters (identity lookup) and the replay guard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from taxaddr.db.driver import fetchone, statements
from taxaddr.db.schema import RequesterRow


def by_fingerprint(session: Session, fingerprint: str) -> tuple[Any, ...] | None:
    """``(id, agency, role, revoked_at)`` of the certificate's registration, or None."""
    return fetchone(session, statements(session).requester_by_fingerprint, (fingerprint,))


def remember_request_id(
    session: Session, requester_id: str, request_id: str, leaf_index: int, now: datetime
) -> bool:
    """Add ``(requester_id, request_id)`` to the replay guard; False when it was there
    (used before, or a concurrent twin committed it first)."""
    sql = statements(session)
    row = fetchone(
        session, sql.remember_request_id, (requester_id, request_id, leaf_index, sql.datetime(now))
    )
    return row is not None


# -- the registry (CLI and start-up; through the ORM)


def get(session: Session, requester_id: str) -> RequesterRow | None:
    return session.get(RequesterRow, requester_id)


def id_of_fingerprint(session: Session, fingerprint: str) -> str | None:
    """The id registered for a certificate fingerprint, or None."""
    query = select(RequesterRow.id).where(RequesterRow.fingerprint == fingerprint)
    return session.execute(query).scalar_one_or_none()


def add(session: Session, row: RequesterRow) -> None:
    """Register a requester (written at once: a clash fails here)."""
    session.add(row)
    session.flush()


def set_revoked(session: Session, requester_id: str, revoked_at: datetime) -> None:
    session.execute(
        update(RequesterRow).where(RequesterRow.id == requester_id).values(revoked_at=revoked_at)
    )


def agencies(session: Session) -> set[str]:
    """Agencies of every registration."""
    return set(session.execute(select(RequesterRow.agency).distinct()).scalars())
