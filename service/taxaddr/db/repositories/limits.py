"""Personal limits: the case references and subjects counted in ``requester_usage``."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from taxaddr.db.driver import executemany, fetchone, statements


def usage(
    session: Session, requester_id: str, *, now: int, since: int, jti: str, subject_ref: str
) -> tuple[int, int, bool]:
    """In one round trip: ``(open_cases, subjects, case_recorded)``.

    ``open_cases``: distinct case references recorded for ``requester_id`` in force at
    ``now`` (nbf <= now < exp), not revoked, other than ``jti``; ``subjects``: distinct
    subject pseudonyms disclosed to ``requester_id`` after ``since`` (epoch seconds),
    other than ``subject_ref``; ``case_recorded``: ``jti`` is already recorded for the
    requester (its sighting need not be written again). A compiled statement
    (``requester_usage``): it runs on every decision.
    """
    row = fetchone(
        session,
        statements(session).requester_usage,
        (requester_id, now, now, jti, requester_id, since, subject_ref, requester_id, jti),
    )
    assert row is not None  # noqa: S101 - a SELECT of three scalar subqueries has one row
    return int(row[0]), int(row[1]), bool(row[2])


def record_case(
    session: Session, jti: str, requesters: Iterable[str], *, nbf: int, exp: int
) -> None:
    """Remember the case reference ``jti`` for every requester it names (once; a row
    already there stays as it is). A compiled statement, one driver call for all: a case
    may name many requesters, and this runs in the decision's write transaction."""
    executemany(
        session,
        statements(session).requester_case_insert,
        [(requester_id, jti, nbf, exp) for requester_id in dict.fromkeys(requesters)],
    )


def record_subject(
    session: Session, requester_id: str, subject_ref: str, *, leaf_index: int, at: int
) -> None:
    """Remember one disclosure's subject pseudonym for its requester."""
    fetchone(
        session,
        statements(session).requester_subject_insert,
        (leaf_index, requester_id, subject_ref, at),
    )
