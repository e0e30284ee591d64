"""The data-access layer: the one place that knows SQL, dialects and drivers.

The same code runs on SQLite (embedded default) and PostgreSQL (production); every
difference between the two is confined to this package:

* :mod:`taxaddr.db.schema` — every table (the declarative ``Base``; Alembic's target);
* :mod:`taxaddr.db.engine` — engines, connection pragmas, durability checks, sessions;
* :mod:`taxaddr.db.driver` — statements run on the DBAPI connection, driver-error mapping;
* :mod:`taxaddr.db.writer` — the cross-process writer queue of a SQLite file;
* :mod:`taxaddr.db.checkpoint` — background WAL checkpoints.
"""

from taxaddr.db.checkpoint import (
    BACKGROUND_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    background_checkpoints,
    stop_background_checkpoints,
)
from taxaddr.db.driver import driver_datetime, driver_fetchone
from taxaddr.db.engine import (
    SQLITE_MMAP_BYTES,
    SQLITE_SYNCHRONOUS_ENV,
    SQLITE_SYNCHRONOUS_MODES,
    is_sqlite,
    make_engine,
    pinned_session,
    session_factory,
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
    "WalCheckpointer",
    "WriterQueue",
    "background_checkpoints",
    "driver_datetime",
    "driver_fetchone",
    "is_sqlite",
    "make_engine",
    "pinned_session",
    "session_factory",
    "sqlite_file",
    "sqlite_synchronous",
    "stop_background_checkpoints",
    "unpin_session",
    "write_transaction",
]
