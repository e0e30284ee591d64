"""Write transactions for the store's bulk writers (importer, KEK rotation)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from taxaddr.db import is_sqlite
from taxaddr.errors import DatabaseUnavailable

# Serializes the store's writers on PostgreSQL (SQLite's BEGIN IMMEDIATE does the same).
_PG_WRITER_LOCK = 0x7461786164647201
_SQLITE_CACHE_KIB = 64 * 1024
_SQLITE_CHECKPOINT_PAGES = 16_384


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """One write transaction; the store's bulk writers are serialized against each other."""
    try:
        if is_sqlite(engine):
            with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
                # Bulk writes touch the blind-index B-tree at random places: a larger
                # page cache and rarer WAL checkpoints keep each batch cheap.
                conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
                conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {_SQLITE_CHECKPOINT_PAGES}")
                yield conn
        else:
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITER_LOCK})
                yield conn
    except OperationalError as exc:
        raise DatabaseUnavailable("database unavailable") from exc
