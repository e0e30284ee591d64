"""Address records: the disclosure lookup and the importer's upsert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from taxaddr.db.schema import address_records
from taxaddr.db.statements import statements_for
from taxaddr.errors import DatabaseUnavailable

_MAX_ID = select(func.coalesce(func.max(address_records.c.id), 0))


def lookup(session: Session, blind_index: bytes, periods: Sequence[str]) -> list[Any]:
    """The stored rows of ``blind_index`` for ``periods``, columns in the order of
    :data:`taxaddr.db.statements.ADDRESS_COLUMNS`, on the session's own DBAPI connection
    (inside its transaction): SQLAlchemy's result machinery cost more than the rest of
    a lookup together. Driver errors become :class:`DatabaseUnavailable`.
    """
    conn = session.connection()
    dialect = conn.dialect
    sql = statements_for(dialect).address_lookup(len(periods))
    try:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, (blind_index, *periods))
            return list(cursor.fetchall())
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        raise DatabaseUnavailable(f"database error during lookup ({type(exc).__name__})") from None


class Upserts:
    """The importer's statements on one write connection: the stored keys of a batch,
    the next id, and ``executemany`` inserts and updates (no per-row ORM or Core).

    Date and time values are rendered by the dialect's own bind processors (once per
    distinct date, not per row), so stored values are exactly what SQLAlchemy writes.
    """

    def __init__(self, conn: Connection) -> None:
        self.sql = statements_for(conn.dialect)
        # date -> (bound value, ISO text for the associated data)
        self._dates: dict[date, tuple[Any, str]] = {}

    def existing(self, conn: Connection, keys: Sequence[bytes]) -> list[Any]:
        """``(id, blind_index, tax_period, as_of)`` of the stored rows of ``keys``."""
        return list(conn.exec_driver_sql(self.sql.address_existing(len(keys)), tuple(keys)))

    def next_id(self, conn: Connection) -> int:
        return int(conn.execute(_MAX_ID).scalar_one()) + 1

    def insert(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Rows in the order of :data:`taxaddr.db.statements.ADDRESS_INSERT_COLUMNS`."""
        conn.exec_driver_sql(self.sql.address_insert, rows)

    def update(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Rows of :data:`taxaddr.db.statements.ADDRESS_UPDATE_COLUMNS`, then the id."""
        conn.exec_driver_sql(self.sql.address_update, rows)

    def date(self, value: date) -> tuple[Any, str]:
        rendered = self._dates.get(value)
        if rendered is None:
            if len(self._dates) > 50_000:
                self._dates.clear()
            rendered = self._dates[value] = (self.sql.date(value), value.isoformat())
        return rendered

    def time(self, value: datetime) -> Any:
        return self.sql.datetime(value)
