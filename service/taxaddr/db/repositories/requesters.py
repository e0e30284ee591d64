"""Requesters (identity lookup) and the replay guard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from taxaddr.db.driver import fetchone, statements


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
