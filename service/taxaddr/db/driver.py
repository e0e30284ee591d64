"""Statements run on the DBAPI connection directly, and the value adapters they need."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


@contextmanager
def _sqlalchemy_errors(dialect: Any, sql: str, params: tuple[Any, ...]) -> Iterator[None]:
    """Re-raise driver errors of a statement run on the DBAPI directly as SQLAlchemy's,
    exactly as the expression layer would (the 503 mapping and IntegrityError handling
    see the same exception types)."""
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi_error, dialect=dialect) from exc


_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def driver_fetchone(
    session: Session, template: str, params: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """One row of a plain-SQL hot-path statement, run on the session's connection.

    ``template`` marks parameters as ``{p}`` (the driver's placeholder is filled in).
    The statement runs in the session's current transaction through the DBAPI cursor:
    for the few statements every request runs, the SQL expression layer costs several
    times the database work. Driver errors are re-raised as SQLAlchemy's.
    """
    connection = session.connection()
    dialect = connection.dialect
    sql = template.format(p=_PLACEHOLDER[dialect.paramstyle])
    cursor = connection.connection.cursor()
    try:
        with _sqlalchemy_errors(dialect, sql, params):
            cursor.execute(sql, params)
            row = cursor.fetchone() if cursor.description is not None else None
    finally:
        cursor.close()
    return None if row is None else tuple(row)


def driver_datetime(session: Session, value: datetime) -> datetime | str:
    """An aware datetime as the driver should receive it for a ``DateTime(timezone=True)``
    column: SQLite stores SQLAlchemy's text form (UTC wall clock, no offset), as the
    expression layer would write it; other drivers take the datetime itself."""
    if session.get_bind().dialect.name != "sqlite":
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
