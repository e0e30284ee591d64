"""The deployment-wide token buckets (PostgreSQL): one atomic upsert per take."""

from __future__ import annotations

from sqlalchemy import Engine

from taxaddr.db.driver import fetchall
from taxaddr.db.statements import statements_for

ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"


def take_token(
    engine: Engine, key: bytes, capacity: float, per_second: float
) -> tuple[bool, float]:
    """Refill ``key``'s bucket to the database's now and spend one token if there is one.

    Returns (granted, tokens left): one statement in its own committed transaction, so
    concurrent takes on every replica serialize on the bucket's row and never overspend.
    """
    stmt = statements_for(engine.dialect).fixed["rate_limit_take"]
    values = {"key": key, "capacity": capacity, "per_second": per_second}
    params = tuple(values[name] for name in stmt.params)
    with engine.connect() as conn:
        # A bucket lost in a crash refills early by at most the unflushed WAL (~0.2 s of
        # takes); not worth an fsync per request. The service's own rows keep theirs.
        conn.exec_driver_sql(ASYNC_COMMIT)
        rows = fetchall(conn, stmt.sql, params)
        conn.commit()
    granted, tokens = rows[0]
    return bool(granted), float(tokens)
