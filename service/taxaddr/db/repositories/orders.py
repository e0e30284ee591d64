"""Court orders: the applied stays and lifts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from taxaddr.db.driver import fetchall, statements
from taxaddr.db.schema import court_orders


def exists(session: Session, jti: str) -> bool:
    return (
        session.execute(select(court_orders.c.jti).where(court_orders.c.jti == jti)).first()
        is not None
    )


def kind_of(session: Session, jti: str) -> str | None:
    row = session.execute(select(court_orders.c.kind).where(court_orders.c.jti == jti)).first()
    return None if row is None else str(row[0])


def insert_order(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(court_orders).values(values))


def mark_lifted(session: Session, stay_jti: str, lift_jti: str) -> None:
    o = court_orders
    session.execute(
        update(o).where(o.c.jti == stay_jti, o.c.lifted_by.is_(None)).values(lifted_by=lift_jti)
    )


def stays_in_force(session: Session, now: int) -> list[Any]:
    """``(jti, number, court, scope)`` of every stay in force at ``now`` (epoch seconds):
    nbf <= now < exp (or no exp), not lifted. A compiled statement (``stays_in_force``):
    it runs twice on every disclosure."""
    return fetchall(session.connection(), statements(session).stays_in_force, (now, now))


def _columns() -> tuple[Any, ...]:
    """``(jti, kind, number, court, nbf, exp, lifts, lifted_by, scope, leaf_index)``."""
    o = court_orders
    return (
        o.c.jti,
        o.c.kind,
        o.c.number,
        o.c.court,
        o.c.nbf,
        o.c.exp,
        o.c.lifts,
        o.c.lifted_by,
        o.c.scope,
        o.c.leaf_index,
    )


def all_orders(session: Session) -> list[Any]:
    """Every applied order, in the order applied."""
    query = select(*_columns()).order_by(court_orders.c.leaf_index)
    return list(session.execute(query).all())


def order_row(session: Session, jti: str) -> Any | None:
    return session.execute(select(*_columns()).where(court_orders.c.jti == jti)).first()
