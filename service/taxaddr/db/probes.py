"""Readiness and start-up probes of the database: what each dialect needs checked.

Built from the tables like every other statement; the SQLite-only checks (the file
exists, ``PRAGMA quick_check``, a write probe on a fresh connection) stay here.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from taxaddr.db.engine import is_sqlite, make_engine, sqlite_file
from taxaddr.db.schema import HEAD_ID, audit_head, requesters
from taxaddr.errors import DatabaseUnavailable

# The write every disclosure makes first is to the audit head; updating it to itself
# and rolling back proves the database takes writes (SQLite refuses the statement on a
# read-only database even when no row matches; PostgreSQL in a read-only transaction too).
_WRITE_PROBE = (
    update(audit_head).where(audit_head.c.id == HEAD_ID).values(tree_size=audit_head.c.tree_size)
)
_READ_PROBES = (
    select(requesters.c.id).limit(1),
    select(audit_head.c.tree_size).limit(1),
)
_REQUIRED_TABLES = frozenset({requesters.name, audit_head.name})


def read_probes(bind: Session | Connection) -> None:
    """Read from the tables every request needs (raises SQLAlchemy's errors)."""
    for probe in _READ_PROBES:
        bind.execute(probe).all()


def is_migrated(connection: Connection) -> bool:
    """Whether the tables every request needs exist."""
    return set(inspect(connection).get_table_names()) >= _REQUIRED_TABLES


def missing_file(engine: Engine) -> str | None:
    """The path of a SQLite database file that does not exist (connecting would create
    an empty one); None when there is one, or for other databases."""
    path = sqlite_file(engine)
    return path if path is not None and not Path(path).is_file() else None


def integrity_problems(connection: Connection) -> list[str]:
    """SQLite's ``PRAGMA quick_check`` of a database file (``[]`` when intact, and for
    other databases)."""
    if sqlite_file(connection.engine) is None:
        return []
    problems = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check")]
    return [] if problems == ["ok"] else problems


def write_probe(engine: Engine) -> None:
    """One rolled-back write; :class:`DatabaseUnavailable` when the database refuses it.

    On SQLite the probe opens a connection of its own: SQLite decides whether a file is
    writable when it opens it, so a pooled connection opened before the file (or its
    directory, or the file system) became read-only would still take the statement,
    and a rolled-back write in WAL mode never reaches the disk. Call it in a writer's
    turn (:class:`taxaddr.db.WriterQueue`): it takes the write lock.
    """
    probe_engine = engine
    if is_sqlite(engine):
        url = engine.url.render_as_string(hide_password=False)
        probe_engine = make_engine(url, poolclass=NullPool)
    try:
        with Session(probe_engine) as session:
            transaction = session.begin()
            try:
                session.execute(_WRITE_PROBE)
            finally:
                transaction.rollback()
    except DBAPIError as exc:
        raise DatabaseUnavailable("database does not take writes (read-only?)") from exc
    finally:
        if probe_engine is not engine:
            probe_engine.dispose()
