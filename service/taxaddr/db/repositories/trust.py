"""Trust changes: the policy version history, pending dual-control changes, admin leaves."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from taxaddr.db.engine import insert_ignore
from taxaddr.db.schema import PendingChange, PolicyVersion, audit_leaves, pending_changes

ADMIN_OUTCOME = "admin"


def add_policy_version(
    session: Session, version: str, first_seen: datetime, statutes_json: str | None
) -> bool:
    """Record a version's first use; False when another decision recorded it first.
    ``first_leaf`` is set by :func:`set_first_leaf` once the leaf is appended."""
    values = {
        "version": version,
        "first_seen": first_seen,
        "first_leaf": -1,
        "criminal_statutes": statutes_json,
    }
    return insert_ignore(session, PolicyVersion, values)


def version_committed(engine: Engine, version: str) -> bool:
    """Whether a committed row records ``version`` (read on a connection of its own)."""
    # A deferred read transaction (not the writers' BEGIN IMMEDIATE of the caller's
    # engine), so it sees the last commit without waiting for the caller's lock.
    with engine.connect().execution_options(sqlite_begin="") as conn:
        stmt = select(PolicyVersion.version).where(PolicyVersion.version == version)
        return conn.execute(stmt).first() is not None


def set_first_leaf(session: Session, version: str, leaf_index: int) -> None:
    session.execute(
        update(PolicyVersion).where(PolicyVersion.version == version).values(first_leaf=leaf_index)
    )


def latest_policy_version(session: Session) -> str | None:
    """The version of the most recent ``policy_changed`` leaf (the policy in force)."""
    stmt = select(PolicyVersion.version).order_by(PolicyVersion.first_leaf.desc()).limit(1)
    return session.execute(stmt).scalar_one_or_none()


def policy_versions(session: Session) -> list[PolicyVersion]:
    """Every version in the order it was first used."""
    stmt = select(PolicyVersion).order_by(PolicyVersion.first_leaf)
    return list(session.execute(stmt).scalars())


def admin_leaves(session: Session, since: date | None, until: date | None) -> list[bytes]:
    """Canonical JSON of every trust-change leaf, by index, within ``[since, until]``."""
    stmt = select(audit_leaves.c.leaf_json).where(audit_leaves.c.outcome == ADMIN_OUTCOME)
    if since is not None:
        stmt = stmt.where(audit_leaves.c.day >= since)
    if until is not None:
        stmt = stmt.where(audit_leaves.c.day <= until)
    rows = session.execute(stmt.order_by(audit_leaves.c.leaf_index))
    return [bytes(data) for (data,) in rows]


# -- pending changes (dual control) --------------------------------------------------------


def add_pending(session: Session, change: PendingChange) -> None:
    session.add(change)
    session.flush()


def pending_for_update(session: Session, change_id: str) -> PendingChange | None:
    """The change, row-locked on PostgreSQL (two approvals at once: one waits)."""
    stmt = select(PendingChange).where(PendingChange.id == change_id).with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def list_pending(session: Session) -> list[PendingChange]:
    stmt = select(PendingChange).order_by(PendingChange.proposed_at)
    return list(session.execute(stmt).scalars())


def decide(
    session: Session, change_id: str, status: str, decided_by: str, decided_at: datetime
) -> bool:
    """Move a pending change to ``status``; False if it was no longer pending (a
    concurrent approval won)."""
    result: Any = session.execute(
        update(pending_changes)
        .where(pending_changes.c.id == change_id, pending_changes.c.status == "pending")
        .values(status=status, decided_by=decided_by, decided_at=decided_at)
    )
    return int(result.rowcount) == 1


def admin_actions_from(session: Session, start: int, below: int) -> list[tuple[int, str]]:
    """``(leaf_index, action)`` of the trust-change leaves in ``[start, below)``: a primary
    key range, so a scrape reads only the leaves appended since the previous one."""
    stmt = (
        select(audit_leaves.c.leaf_index, audit_leaves.c.reason)
        .where(
            audit_leaves.c.leaf_index >= start,
            audit_leaves.c.leaf_index < below,
            audit_leaves.c.outcome == ADMIN_OUTCOME,
        )
        .order_by(audit_leaves.c.leaf_index)
    )
    return [(int(i), str(r)) for i, r in session.execute(stmt)]
