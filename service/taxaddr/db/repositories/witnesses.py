"""Witness cosignatures of the log's checkpoints."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taxaddr.db.engine import insert_ignore
from taxaddr.db.schema import AuditCosignature, audit_cosignatures


def add_cosignature(
    session: Session, tree_size: int, witness: str, line: str, cosigned_at: int
) -> bool:
    """Keep one cosignature per (size, witness); False if it was there."""
    values = {"tree_size": tree_size, "witness": witness, "line": line, "cosigned_at": cosigned_at}
    return insert_ignore(session, AuditCosignature, values)


def cosigners_of(session: Session, tree_size: int) -> set[str]:
    stmt = select(audit_cosignatures.c.witness).where(audit_cosignatures.c.tree_size == tree_size)
    return {str(w) for (w,) in session.execute(stmt)}


def cosignature_lines(session: Session, tree_size: int) -> list[str]:
    stmt = (
        select(audit_cosignatures.c.line)
        .where(audit_cosignatures.c.tree_size == tree_size)
        .order_by(audit_cosignatures.c.witness)
    )
    return [str(line) for (line,) in session.execute(stmt)]


def cosigned_sizes(session: Session, at_least: int, quorum: int) -> list[int]:
    """Checkpoint sizes >= ``at_least`` with at least ``quorum`` cosignatures, ascending."""
    stmt = (
        select(audit_cosignatures.c.tree_size)
        .where(audit_cosignatures.c.tree_size >= at_least)
        .group_by(audit_cosignatures.c.tree_size)
        .having(func.count() >= quorum)
        .order_by(audit_cosignatures.c.tree_size)
    )
    return [int(s) for (s,) in session.execute(stmt)]
