"""One :class:`Database` per dialect, behind one small Protocol; chosen once from settings.

The rest of the code never asks which database it has: write serialization (the
writer queue and ``BEGIN IMMEDIATE`` on SQLite, row locks on PostgreSQL), snapshot
reads, insert-or-ignore, value adapters and the compiled statements come from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from taxaddr.db import engine as _engine
from taxaddr.db.checkpoint import WalCheckpointer, background_checkpoints
from taxaddr.db.schema import Base
from taxaddr.db.statements import Statements, statements_for
from taxaddr.db.writer import WRITER_LOCK_DEADLINE_SECONDS, WriterQueue

if TYPE_CHECKING:
    from taxaddr.config import Settings


class Database(Protocol):
    """What the service needs of its database, whichever dialect it is."""

    engine: Engine
    statements: Statements

    @property
    def embedded(self) -> bool:
        """True for an embedded single-file database (one writer at a time, per file)."""

    def write_transaction(self) -> AbstractContextManager[Session]:
        """A session in one write transaction, serialized against other writers."""

    def bulk_write(self) -> AbstractContextManager[Connection]:
        """One write transaction of a bulk writer (importer, KEK rotation)."""

    def snapshot_session(self) -> Session:
        """A session reading one consistent snapshot while appends go on."""

    def pinned_session(self, *, immediate: bool = False) -> Session:
        """A session on a connection of its own (close it with :meth:`unpin`)."""

    def unpin(self, session: Session) -> None: ...

    def writer_queue(self, deadline: float = WRITER_LOCK_DEADLINE_SECONDS) -> WriterQueue | None:
        """This process's queue of writers, where the database needs one (else None)."""

    def background_checkpoints(self) -> WalCheckpointer | None:
        """Start background WAL checkpoints where the database has a WAL file."""

    def insert_ignore(self, session: Session, model: type[Base], values: dict[str, Any]) -> bool:
        """INSERT unless the primary key exists; True if inserted."""

    def dispose(self) -> None: ...


class _Common:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements = statements_for(engine.dialect)

    def write_transaction(self) -> AbstractContextManager[Session]:
        return _engine.write_transaction(self.engine)

    def bulk_write(self) -> AbstractContextManager[Connection]:
        return _engine.bulk_write_connection(self.engine)

    def snapshot_session(self) -> Session:
        return _engine.snapshot_session(self.engine)

    def pinned_session(self, *, immediate: bool = False) -> Session:
        return _engine.pinned_session(self.engine, immediate=immediate)

    def unpin(self, session: Session) -> None:
        _engine.unpin_session(session)

    def insert_ignore(self, session: Session, model: type[Base], values: dict[str, Any]) -> bool:
        return _engine.insert_ignore(session, model, values)

    def dispose(self) -> None:
        self.engine.dispose()


class SqliteDatabase(_Common):
    """SQLite (embedded default): ``BEGIN IMMEDIATE`` serializes writers, a writer
    queue orders this machine's server processes, WAL gives readers snapshots."""

    @property
    def embedded(self) -> bool:
        return True

    def writer_queue(self, deadline: float = WRITER_LOCK_DEADLINE_SECONDS) -> WriterQueue | None:
        return WriterQueue(self.engine, deadline)

    def background_checkpoints(self) -> WalCheckpointer | None:
        return background_checkpoints(self.engine)


class PostgresDatabase(_Common):
    """PostgreSQL (production): writers lock the rows they need; no queue, no WAL file."""

    @property
    def embedded(self) -> bool:
        return False

    def writer_queue(self, deadline: float = WRITER_LOCK_DEADLINE_SECONDS) -> WriterQueue | None:
        return None

    def background_checkpoints(self) -> WalCheckpointer | None:
        return None


def database_for(engine: Engine) -> Database:
    """The :class:`Database` of an existing engine."""
    if engine.dialect.name == "sqlite":
        return SqliteDatabase(engine)
    return PostgresDatabase(engine)


def open_database(settings: Settings, **engine_options: Any) -> Database:
    """The service's database, from ``settings.database_url`` (the one constructor)."""
    return database_for(_engine.make_engine(settings.database_url, **engine_options))


@contextmanager
def opened(settings: Settings, **engine_options: Any) -> Iterator[Database]:
    """:func:`open_database` for one ``with`` block (the engine is disposed after)."""
    database = open_database(settings, **engine_options)
    try:
        yield database
    finally:
        database.dispose()
