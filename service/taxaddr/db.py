"""Database plumbing shared by every package: the declarative base and engines.

The same code runs on SQLite (embedded default) and PostgreSQL (production).
Dialect differences are confined to this module.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from taxaddr.errors import DatabaseUnavailable

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


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


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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


# How long a writer waits for its turn before 503 database_unavailable (the server sets
# TAXADDR_WRITER_LOCK_TIMEOUT_SECONDS). A turn lasts one transaction, milliseconds; only a
# writer process that is stopped or hung holds it for seconds.
WRITER_LOCK_DEADLINE_SECONDS = 2.0


@dataclass(eq=False)
class _PendingFileLock:
    """A blocking ``flock`` in flight on the queue's helper thread."""

    future: Future[None]
    waiting: bool = True  # a writer is blocked on ``future`` right now


class WriterQueue:
    """Queues one engine's SQLite writers without sleeping in SQLite's busy handler.

    SQLite admits one writer at a time; a writer that finds the database locked
    polls with growing sleeps (1, 2, 5, 10 ms ...), which turns contention into
    latency. Writers of this process queue on a lock, and writers of other server
    processes on an exclusive ``flock`` of a file beside the database, so the next
    writer starts the moment the previous one committed. (``flock`` locks belong
    to the open file, which every thread of a process shares: hence the thread lock
    first.) Other programs (the CLI, imports) still meet SQLite's own lock and
    busy timeout. Other databases need no queue: rows are locked where needed.

    A turn is taken within ``deadline`` seconds or not at all
    (:class:`DatabaseUnavailable`): a writer process that was stopped (``kill
    -STOP``) or hung while holding the file lock must not block this process's
    writers for longer, and with decisions made on the event loop, a blocked writer
    is a blocked server. An uncontended lock is taken with ``LOCK_NB`` (no thread
    involved); a contended one by a blocking ``flock`` on a daemon helper thread,
    waited for with a timeout, so the next writer still starts the moment the
    holder releases it. When a wait times out, that ``flock`` stays queued and
    later writers fail at once instead of each blocking for another deadline;
    should it succeed with nobody waiting, the helper releases the lock at once.
    """

    def __init__(self, engine: Engine, deadline: float = WRITER_LOCK_DEADLINE_SECONDS) -> None:
        database = sqlite_file(engine)
        self._path = f"{database}-writer.lock" if database else None
        self.deadline = deadline
        self._lock = threading.Lock()  # this process's writers, one at a time
        self._fd: int | None = None
        self._state = threading.RLock()  # guards _pending (re-entered by inline callbacks)
        self._pending: _PendingFileLock | None = None
        self._requests: SimpleQueue[tuple[int, Future[None]]] | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this writer's turn (at most ``deadline`` seconds); hold it for the
        ``with`` block."""
        if not self._path:
            yield
            return
        if not self._lock.acquire(timeout=self.deadline):
            raise DatabaseUnavailable("database writers did not get a turn in time")
        try:
            fd = self._file()
            self._lock_file(fd)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _file(self) -> int:
        fd = self._fd
        if fd is None:
            try:
                fd = self._fd = os.open(str(self._path), os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise DatabaseUnavailable("database writer lock unusable") from exc
        return fd

    def _lock_file(self, fd: int) -> None:
        """Take the cross-process lock within the deadline (caller holds ``_lock``)."""
        with self._state:
            pending = self._pending
            if pending is not None:
                if pending.future.done():
                    self._claim(pending)
                    return
                # An earlier writer of this process waited a whole deadline on this very
                # flock: the holder is stuck, and waiting again would block us again.
                raise DatabaseUnavailable("database writer lock held by a stalled process")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise DatabaseUnavailable("database writer lock unusable") from exc
            else:
                return
            pending = self._pending = _PendingFileLock(self._submit(fd))
            pending.future.add_done_callback(self._settle)
        wait([pending.future], timeout=self.deadline)
        with self._state:
            pending.waiting = False
            if pending.future.done():
                self._claim(pending)
                return
        raise DatabaseUnavailable("database writer lock not free in time")

    def _claim(self, pending: _PendingFileLock) -> None:
        """The pending flock finished: the lock is ours now, or it failed (caller holds
        ``_state``)."""
        self._pending = None
        error = pending.future.exception()
        if error is not None:
            raise DatabaseUnavailable("database writer lock unusable") from error

    def _settle(self, future: Future[None]) -> None:
        """Helper thread, after its flock returned: release a lock nobody waits for."""
        with self._state:
            pending = self._pending
            if pending is None or pending.future is not future or pending.waiting:
                return  # a waiting writer claims it
            self._pending = None
            if future.exception() is None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _submit(self, fd: int) -> Future[None]:
        """A blocking flock of ``fd`` on the helper thread (started on first contention)."""
        if self._requests is None:
            self._requests = SimpleQueue()
            threading.Thread(
                target=_flock_helper, args=(self._requests,), name="writer-lock", daemon=True
            ).start()
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()
        self._requests.put((fd, future))
        return future

    def close(self) -> None:
        with self._lock, self._state:
            if self._requests is not None:
                self._requests.put((-1, Future()))  # ends the helper once it is free
                self._requests = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _flock_helper(requests: SimpleQueue[tuple[int, Future[None]]]) -> None:
    """Blocking flocks for a WriterQueue, one at a time; a daemon thread, so one that
    never returns (a stalled holder) does not keep the process from exiting."""
    while True:
        fd, future = requests.get()
        if fd < 0:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)


# Pages the WAL may hold before a committing writer checkpoints it itself: only a
# safety net while a WalCheckpointer runs (SQLite's default is 1,000 pages).
BACKGROUND_AUTOCHECKPOINT_PAGES = 16_000


class WalCheckpointer:
    """Checkpoints an engine's SQLite WAL from a background thread, off the request path.

    By default the writer whose commit grows the WAL past 1,000 pages copies them
    into the database file and syncs both files inside its turn, while every writer
    queued behind it waits (and, on a worker deciding on its event loop, every
    request of that worker). Here a daemon thread runs a PASSIVE
    checkpoint (it never waits for readers or writers) every ``interval`` seconds
    on its own connection, with the GIL released, and the engine's connections
    checkpoint on commit only past :data:`BACKGROUND_AUTOCHECKPOINT_PAGES`, should
    the thread fall behind. Several server processes may each run one; SQLite runs
    one checkpoint at a time and the others skip their turn. The thread ends with
    :meth:`stop` or when the engine is garbage-collected.
    """

    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        self._engine = weakref.ref(engine)
        self.interval = interval
        self.runs = 0
        self._stop = threading.Event()
        event.listen(engine, "connect", _background_checkpoint_pragma)
        self._thread = threading.Thread(target=self._loop, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            engine = self._engine()
            if engine is None:
                return
            self.checkpoint(engine)
            del engine

    def checkpoint(self, engine: Engine) -> bool:
        """One PASSIVE checkpoint; False when it could not run (busy, database gone)."""
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").close()
        except DBAPIError:
            return False
        self.runs += 1
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _background_checkpoint_pragma(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKGROUND_AUTOCHECKPOINT_PAGES}")
    cur.close()


_CHECKPOINTERS: weakref.WeakKeyDictionary[Engine, WalCheckpointer] = weakref.WeakKeyDictionary()
_CHECKPOINTERS_LOCK = threading.Lock()


def background_checkpoints(engine: Engine) -> WalCheckpointer | None:
    """Start (once per engine) background WAL checkpoints for a SQLite database file."""
    if sqlite_file(engine) is None:
        return None
    with _CHECKPOINTERS_LOCK:
        checkpointer = _CHECKPOINTERS.get(engine)
        if checkpointer is None:
            checkpointer = _CHECKPOINTERS[engine] = WalCheckpointer(engine)
        return checkpointer


def stop_background_checkpoints() -> None:
    """Stop every checkpoint thread of this process (engine disposal, tests)."""
    with _CHECKPOINTERS_LOCK:
        checkpointers = list(_CHECKPOINTERS.values())
        _CHECKPOINTERS.clear()
    for checkpointer in checkpointers:
        checkpointer.stop()
