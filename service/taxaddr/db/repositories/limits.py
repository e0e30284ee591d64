"""Personal limits: the case references and subjects counted in ``requester_usage``."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, func, insert, select
from sqlalchemy.orm import Session

from taxaddr.db.engine import insert_ignore
from taxaddr.db.schema import (
    RequesterCase,
    requester_cases,
    requester_subjects,
    revoked_case_jtis,
)


def usage(
    session: Session, requester_id: str, *, now: int, since: int, jti: str, subject_ref: str
) -> tuple[int, int, bool]:
    """In one round trip: ``(open_cases, subjects, case_recorded)``.

    ``open_cases``: distinct case references recorded for ``requester_id`` in force at
    ``now`` (nbf <= now < exp), not revoked, other than ``jti``; ``subjects``: distinct
    subject pseudonyms disclosed to ``requester_id`` after ``since`` (epoch seconds),
    other than ``subject_ref``; ``case_recorded``: ``jti`` is already recorded for the
    requester (its sighting need not be written again).
    """
    c, s = requester_cases, requester_subjects
    cases = select(func.count()).where(
        c.c.requester_id == requester_id,
        c.c.nbf <= now,
        c.c.exp > now,
        c.c.jti != jti,
        c.c.jti.not_in(select(revoked_case_jtis.c.jti)),
    )
    subjects = select(func.count(func.distinct(s.c.subject_ref))).where(
        s.c.requester_id == requester_id,
        s.c.disclosed_at > since,
        s.c.subject_ref != subject_ref,
    )
    recorded = exists().where(c.c.requester_id == requester_id, c.c.jti == jti)
    row = session.execute(
        select(cases.scalar_subquery(), subjects.scalar_subquery(), recorded)
    ).one()
    return int(row[0]), int(row[1]), bool(row[2])


def record_case(
    session: Session, jti: str, requesters: Iterable[str], *, nbf: int, exp: int
) -> None:
    """Remember the case reference ``jti`` for every requester it names (once)."""
    for requester_id in dict.fromkeys(requesters):
        insert_ignore(
            session,
            RequesterCase,
            {"requester_id": requester_id, "jti": jti, "nbf": nbf, "exp": exp},
        )


def record_subject(
    session: Session, requester_id: str, subject_ref: str, *, leaf_index: int, at: int
) -> None:
    """Remember one disclosure's subject pseudonym for its requester."""
    session.execute(
        insert(requester_subjects).values(
            leaf_index=leaf_index,
            requester_id=requester_id,
            subject_ref=subject_ref,
            disclosed_at=at,
        )
    )
