"""Engines, connection set-up (pragmas, durability) and sessions for both dialects."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.db.driver import _sqlalchemy_errors
from taxaddr.db.schema import Base
from taxaddr.errors import DatabaseUnavailable


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file(engine: Engine) -> str | None:
    """The database file's path when ``engine`` is SQLite on a file (not in memory)."""
    database = engine.url.database if is_sqlite(engine) else None
    return database if database and database != ":memory:" else None


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if path and path != ":memory:" and "poolclass" not in kwargs:
            # Opening a SQLite connection re-reads the schema and re-runs the pragmas:
            # keep one pooled connection per concurrent user (disclosure threads plus
            # the default worker threads) instead of closing overflow ones on return.
            kwargs.setdefault("pool_size", 16)
            kwargs.setdefault("max_overflow", 16)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so
        # "BEGIN IMMEDIATE" can serialize writers where we need it.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_durability)
    return engine


SQLITE_MMAP_BYTES = 1 << 30

# Durability of a commit. In WAL mode, NORMAL syncs only at checkpoints, so an OS crash
# or power loss can roll back a transaction that had committed, and with it an audit
# leaf whose 200 was already sent: § 6103(p)(3) cannot tolerate that. FULL syncs the
# WAL at every commit. The variable exists for A/B measurements (bench/bench_api.py
# --ab-synchronous); anything but FULL or EXTRA gives up that guarantee.
SQLITE_SYNCHRONOUS_ENV = "TAXADDR_SQLITE_SYNCHRONOUS"
SQLITE_SYNCHRONOUS_MODES = ("FULL", "EXTRA", "NORMAL")


def sqlite_synchronous() -> str:
    """The ``PRAGMA synchronous`` mode for new SQLite connections (default ``FULL``)."""
    mode = os.environ.get(SQLITE_SYNCHRONOUS_ENV, "").strip().upper() or "FULL"
    if mode not in SQLITE_SYNCHRONOUS_MODES:
        raise DatabaseUnavailable(
            f"{SQLITE_SYNCHRONOUS_ENV} must be one of {', '.join(SQLITE_SYNCHRONOUS_MODES)}"
        )
    return mode


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA synchronous={sqlite_synchronous()}")
    cur.execute("PRAGMA busy_timeout=30000")
    # Read pages through a shared memory map: a connection's own page cache is
    # discarded whenever another connection committed, which on a busy server is
    # before nearly every transaction; mapped pages need no copy and no syscall.
    cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cur.close()


def _postgres_durability(dbapi_conn: Any, _record: Any) -> None:
    """Refuse a PostgreSQL session whose commits may return before the WAL is flushed.

    With ``synchronous_commit=off`` a committed audit leaf (and its 200) can be lost in
    a server crash. Every value but ``off`` waits at least for the local flush. Checked
    on each new connection, so the service refuses at its first database use (start-up
    checks, ``/readyz``) and never writes through such a session.
    """
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SHOW synchronous_commit")
        row = cur.fetchone()
    finally:
        cur.close()
    value = str(row[0]).strip().lower() if row else ""
    if value in ("on", "local", "remote_write", "remote_apply"):
        return
    dbapi_conn.close()
    raise DatabaseUnavailable(
        "PostgreSQL synchronous_commit is not on: committed audit leaves could be lost "
        "in a crash (set synchronous_commit=on for the database or role)"
    )


def _sqlite_begin(conn: Any) -> None:
    # Straight to the driver: through exec_driver_sql, BEGIN alone cost ~70 us (a
    # whole statement execution with its events and result), twice per request.
    mode = conn.get_execution_options().get("sqlite_begin", "")
    sql = f"BEGIN {mode}".strip()
    with _sqlalchemy_errors(conn.dialect, sql, ()):
        conn.connection.driver_connection.execute(sql)


_IMMEDIATE: dict[Engine, Engine] = {}


def _immediate(engine: Engine) -> Engine:
    """The engine's ``BEGIN IMMEDIATE`` variant, built once per engine (it shares the pool)."""
    bound = _IMMEDIATE.get(engine)
    if bound is None:
        bound = engine.execution_options(sqlite_begin="IMMEDIATE")
        if len(_IMMEDIATE) > 64:  # engines come and go in tests; keep this bounded
            _IMMEDIATE.clear()
        _IMMEDIATE[engine] = bound
    return bound


def pinned_session(engine: Engine, *, immediate: bool = False) -> Session:
    """A session on a connection of its own, kept out of the pool between transactions.

    For a hot path that runs many short transactions from one thread: taking a
    pooled connection and building a session per transaction cost ~150 us per
    write and ~30 us per read (measured), more than SQLite's work. ``immediate``:
    its transactions start with ``BEGIN IMMEDIATE`` on SQLite. Close the session's
    connection (:func:`unpin_session`) when done; a failure raises
    :class:`DatabaseUnavailable`.
    """
    bind = _immediate(engine) if immediate and is_sqlite(engine) else engine
    try:
        return Session(bind=bind.connect(), expire_on_commit=False)
    except OperationalError as exc:
        raise DatabaseUnavailable("database unavailable") from exc


def unpin_session(session: Session) -> None:
    """Release a :func:`pinned_session`'s connection (ends any open transaction)."""
    connection = session.get_bind()
    session.close()
    if isinstance(connection, Connection):
        connection.close()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Session]:
    """A session in one write transaction, serialized against other writers on SQLite.

    On SQLite ``BEGIN IMMEDIATE`` takes the write lock at the start, so concurrent
    writers queue instead of failing at commit. On PostgreSQL callers lock the
    rows they need (``SELECT ... FOR UPDATE``).
    """
    bind = _immediate(engine) if is_sqlite(engine) else engine
    try:
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session
    except OperationalError as exc:
        raise DatabaseUnavailable("database unavailable") from exc


# Serializes bulk writers on PostgreSQL (SQLite's BEGIN IMMEDIATE does the same).
_PG_BULK_WRITER_LOCK = 0x7461786164647201
PG_BULK_WRITER_LOCK = _PG_BULK_WRITER_LOCK
"""The advisory lock key every bulk writer's PostgreSQL transaction takes first."""
_SQLITE_BULK_CACHE_KIB = 64 * 1024
_SQLITE_BULK_CHECKPOINT_PAGES = 16_384
_SQLITE_BULK_MMAP_BYTES = 0


@contextmanager
def bulk_write_connection(engine: Engine) -> Iterator[Connection]:
    """One write transaction of a bulk writer (importer, KEK rotation), serialized
    against the other bulk writers."""
    writes = BulkWrites(engine)
    try:
        with writes.transaction() as conn:
            yield conn
    finally:
        writes.close()


# Bulk writes on SQLite touch the blind-index B-tree at random places: a larger page
# cache and rarer WAL checkpoints keep each batch cheap. Pages are read through that
# bounded cache, not the memory map: a bulk writer touches the whole file, and every
# mapped page it read stays resident in the process (1M rows: +140 MB of RSS).
_SQLITE_BULK_PRAGMAS = (
    ("cache_size", -_SQLITE_BULK_CACHE_KIB),
    ("wal_autocheckpoint", _SQLITE_BULK_CHECKPOINT_PAGES),
    ("mmap_size", _SQLITE_BULK_MMAP_BYTES),
)


class BulkWrites:
    """The write transactions of one bulk writer (the importer), one after another,
    on one connection held for all of them (:meth:`close` returns it).

    SQLite: each transaction begins ``IMMEDIATE`` (which serializes the bulk writers);
    the connection takes the bulk settings once and gets its own back at
    :meth:`close` (a 64 MB page cache left on a pooled connection made the first
    statement of every later read transaction ~140 us of SQLite CPU, the cost of
    discarding that cache when another connection has written). Held across batches,
    the cache keeps the B-tree pages the previous batches read: set and restored per
    transaction, shrinking it emptied it every batch. PostgreSQL: a pool checkout
    (with its pre-ping) and a lock statement of its own per transaction cost more
    round trips than a batch's reads; the caller takes the bulk writers' lock
    (:data:`PG_BULK_WRITER_LOCK`, ``pg_advisory_xact_lock``) as the first statement of
    each transaction, pipelined with its first reads
    (:meth:`taxaddr.db.repositories.addresses.Upserts.prepare`) when
    ``caller_locks``; otherwise each transaction takes it first, by itself.
    """

    def __init__(self, engine: Engine, *, caller_locks: bool = False) -> None:
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self._lock = not self.sqlite and not caller_locks
        self._conn: Connection | None = None
        self._restore: list[tuple[str, int]] = []

    def _connection(self) -> Connection:
        held = self._conn
        if held is not None and not held.closed and not held.invalidated:
            return held
        self.close()
        if not self.sqlite:
            held = self._conn = self.engine.connect()
            return held
        held = self._conn = _immediate(self.engine).connect()
        self._restore = [
            (name, int(held.exec_driver_sql(f"PRAGMA {name}").scalar_one()))
            for name, _ in _SQLITE_BULK_PRAGMAS
        ]
        for name, value in _SQLITE_BULK_PRAGMAS:
            held.exec_driver_sql(f"PRAGMA {name} = {value}")
        held.commit()  # PRAGMA reads autobegin a transaction; close it
        return held

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            conn = self._connection()
            with conn.begin():
                if self._lock:
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_BULK_WRITER_LOCK}
                    )
                yield conn
        except OperationalError as exc:
            raise DatabaseUnavailable("database unavailable") from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        restore, self._restore = self._restore, []
        if conn is None:
            return
        with suppress(SQLAlchemyError):  # a broken connection is dropped anyway
            for name, value in restore:
                conn.exec_driver_sql(f"PRAGMA {name} = {value}")
            if restore:
                conn.commit()
        with suppress(SQLAlchemyError):
            conn.close()


def snapshot_session(engine: Engine) -> Session:
    """A session that reads one consistent snapshot while appends go on.

    PostgreSQL needs REPEATABLE READ for that; SQLite in WAL mode gives a read
    transaction a snapshot by itself.
    """
    if is_sqlite(engine):
        return Session(engine)
    return Session(engine.execution_options(isolation_level="REPEATABLE READ"))


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT that does nothing if the primary key exists (both dialects); True if inserted.

    Told by RETURNING, not the rowcount: on PostgreSQL (psycopg) the rowcount of this
    statement reads -1, which counted as "inserted" every time.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = cast(Table, model.__table__)
    key = next(iter(table.primary_key.columns))
    stmt = dialect.insert(table).values(values).on_conflict_do_nothing().returning(key)
    return session.execute(stmt).first() is not None
