"""The data-access layer: the one place that knows SQL, dialects and drivers.

The same code runs on SQLite (embedded default) and PostgreSQL (production); every
difference between the two is confined to this package:

* :mod:`taxaddr.db.database` — the :class:`Database` Protocol and its two implementations
  (:class:`SqliteDatabase`, :class:`PostgresDatabase`). The composition root calls
  :func:`open_database(settings) <open_database>` once; ``database.engine`` remains for
  code that needs a SQLAlchemy ``Engine``;
* :mod:`taxaddr.db.schema` — every table (the declarative ``Base``; Alembic's target);
* :mod:`taxaddr.db.statements` — every hot statement, built from the tables and compiled
  once per dialect into the driver string it runs;
* :mod:`taxaddr.db.repositories` — one module per aggregate (requesters and the replay
  guard, cases and issuers, address records, audit log and accounting): the domain
  packages' SQL (oversight's aggregate queries still build theirs in
  ``taxaddr.audit.queries`` and run them through :func:`taxaddr.db.driver.stream_rows`);
* :mod:`taxaddr.db.engine` — engines, connection pragmas, durability checks, sessions and
  write transactions (``BEGIN IMMEDIATE`` on SQLite), snapshot reads, insert-or-ignore;
* :mod:`taxaddr.db.driver` — compiled statements run on the DBAPI cursor, with driver
  errors re-raised as SQLAlchemy's;
* :mod:`taxaddr.db.probes` — readiness and start-up probes (migrated, intact, writable);
* :mod:`taxaddr.db.writer` — the cross-process writer queue of a SQLite file;
* :mod:`taxaddr.db.checkpoint` — background WAL checkpoints.

This package sits below every domain package: it imports only ``taxaddr.config`` (for
types) and ``taxaddr.errors``.
"""

from taxaddr.db.checkpoint import (
    BACKGROUND_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    background_checkpoints,
    stop_background_checkpoints,
)
from taxaddr.db.database import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    database_for,
    open_database,
    opened,
)
from taxaddr.db.engine import (
    SQLITE_MMAP_BYTES,
    SQLITE_SYNCHRONOUS_ENV,
    SQLITE_SYNCHRONOUS_MODES,
    BulkWrites,
    bulk_write_connection,
    insert_ignore,
    make_engine,
    pinned_session,
    snapshot_session,
    sqlite_file,
    sqlite_synchronous,
    unpin_session,
    write_transaction,
)
from taxaddr.db.schema import NAMING, Base
from taxaddr.db.writer import WRITER_LOCK_DEADLINE_SECONDS, WriterQueue

__all__ = [
    "BACKGROUND_AUTOCHECKPOINT_PAGES",
    "NAMING",
    "SQLITE_MMAP_BYTES",
    "SQLITE_SYNCHRONOUS_ENV",
    "SQLITE_SYNCHRONOUS_MODES",
    "WRITER_LOCK_DEADLINE_SECONDS",
    "Base",
    "BulkWrites",
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "WalCheckpointer",
    "WriterQueue",
    "background_checkpoints",
    "bulk_write_connection",
    "database_for",
    "insert_ignore",
    "make_engine",
    "open_database",
    "opened",
    "pinned_session",
    "snapshot_session",
    "sqlite_file",
    "sqlite_synchronous",
    "stop_background_checkpoints",
    "unpin_session",
    "write_transaction",
]
