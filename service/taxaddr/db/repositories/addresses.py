"""Address records: the disclosure lookup and the importer's upsert."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from psycopg.types.string import BytesBinaryDumper
from sqlalchemy import Connection, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from taxaddr.db.driver import _sqlalchemy_errors, fetchall
from taxaddr.db.engine import PG_BULK_WRITER_LOCK
from taxaddr.db.schema import address_records
from taxaddr.db.statements import ADDRESS_COLUMNS, ADDRESS_COPY_TYPES, statements_for
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


def rows_of(session: Session, blind_index: bytes) -> list[Any]:
    """Every stored row of ``blind_index`` (all tax periods), columns in the order of
    :data:`taxaddr.db.statements.ADDRESS_COLUMNS` (taxpayer accounting's name check)."""
    cols = [address_records.c[name] for name in ADDRESS_COLUMNS]
    stmt = select(*cols).where(address_records.c.blind_index == blind_index)
    return [tuple(row) for row in session.execute(stmt)]


class Upserts:
    """The importer's statements on one write connection: the stored keys of a batch,
    the next id, and ``executemany`` inserts and updates (no per-row ORM or Core).

    Date and time values are rendered by the dialect's own bind processors (once per
    distinct date, not per row), so stored values are exactly what SQLAlchemy writes.
    """

    def __init__(self, conn: Connection) -> None:
        self.sql = statements_for(conn.dialect)
        self.postgres = conn.dialect.name == "postgresql"
        # date -> (bound value, ISO text for the associated data)
        self._dates: dict[date, tuple[Any, str]] = {}

    def existing(self, conn: Connection, keys: Sequence[bytes]) -> list[Any]:
        """``(id, blind_index, tax_period, as_of)`` of the stored rows of ``keys``."""
        if self.postgres:  # one array parameter instead of a marker per key
            return fetchall(conn, self.sql.address_existing_any, (list(keys),))
        return list(conn.exec_driver_sql(self.sql.address_existing(len(keys)), tuple(keys)))

    def next_id(self, conn: Connection) -> int:
        return int(conn.execute(_MAX_ID).scalar_one()) + 1

    def prepare(self, conn: Connection, keys: Sequence[bytes]) -> tuple[list[Any], int]:
        """A batch's first reads: :meth:`existing` of ``keys`` and :meth:`next_id`.

        PostgreSQL (a :class:`taxaddr.db.BulkWrites` transaction, which takes no lock of
        its own): the bulk writers' advisory lock, then both reads, sent in one round
        trip (psycopg's pipeline mode). Each statement still runs in order, after the
        lock is granted, with its own snapshot (READ COMMITTED): the highest id is read
        after every earlier bulk writer committed.
        """
        if not self.postgres:
            return self.existing(conn, keys), self.next_id(conn)
        sql = self.sql
        driver = conn.connection.driver_connection
        assert driver is not None  # noqa: S101 - a checked-out connection has its driver's
        with _sqlalchemy_errors(conn.dialect, sql.address_existing_any, ()):
            with driver.pipeline():
                driver.execute(sql.bulk_writer_lock, (PG_BULK_WRITER_LOCK,))
                found = driver.execute(sql.address_existing_any, (list(keys),))
                top = driver.execute(sql.address_max_id)
            existing = found.fetchall()
            row = top.fetchone()
        assert row is not None  # noqa: S101 - an aggregate always has its row
        return existing, int(row[0]) + 1

    def insert(self, conn: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows in the order of :data:`taxaddr.db.statements.ADDRESS_INSERT_COLUMNS`.

        PostgreSQL: one binary ``COPY … FROM STDIN`` streamed from the rows as they come
        (several times faster than a pipelined ``executemany``; the server stores the
        first rows while later ones are still being sealed); SQLite: ``executemany``.
        """
        if not self.postgres:
            conn.exec_driver_sql(self.sql.address_insert, list(rows))
            return
        cursor = conn.connection.cursor()
        # bytea by the C dumper of bytes (this cursor only): the one psycopg finds by the
        # type's name, its DB-API ``Binary`` wrapper's, is Python code, 4 calls a row
        cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
        try:
            with (
                _sqlalchemy_errors(conn.dialect, self.sql.address_copy, ()),
                cursor.copy(self.sql.address_copy) as copy,
            ):
                copy.set_types(ADDRESS_COPY_TYPES)
                write = copy.write_row
                for row in rows:
                    write(row)
        finally:
            cursor.close()

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


# -- KEK rotation: re-wrap data keys in batches (the ciphertexts stay)

_a = address_records
_KEYS_NOT_UNDER = (
    select(_a.c.id, _a.c.kek_version, _a.c.wrapped_key)
    .where(_a.c.id > bindparam("after"), _a.c.kek_version != bindparam("target"))
    .order_by(_a.c.id)
    .limit(bindparam("n"))
)
# Guarded by the old version and key: a row changed since it was read is left alone.
_SET_KEY = update(_a).where(
    and_(
        _a.c.id == bindparam("b_id"),
        _a.c.kek_version == bindparam("b_old"),
        _a.c.wrapped_key == bindparam("b_wrapped"),
    )
)
_KEK_VERSIONS = select(_a.c.kek_version).distinct()


def keys_not_under(conn: Connection, kek_version: int, *, after: int, limit: int) -> list[Any]:
    """``(id, kek_version, wrapped_key)`` of up to ``limit`` records after id ``after``
    whose data key is wrapped under another KEK, by id."""
    params = {"after": after, "target": kek_version, "n": limit}
    return list(conn.execute(_KEYS_NOT_UNDER, params).all())


def set_keys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Re-wrapped keys: ``b_id``, ``b_old``, ``b_wrapped`` (the row as read) and the new
    ``kek_version`` and ``wrapped_key`` per row."""
    conn.execute(_SET_KEY, rows)


def kek_versions(session: Session) -> set[int]:
    """KEK versions that address records are still wrapped under."""
    return {int(v) for v in session.execute(_KEK_VERSIONS).scalars()}
