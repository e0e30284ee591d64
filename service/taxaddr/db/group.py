"""Group commit: one durable commit covers the write transactions of several requests.

With every commit durable (SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit=on``) a commit costs one WAL flush, and a flush costs far more
than a decision's writes. A :class:`GroupCommitter` is one writer thread per process
(per engine) that runs the write bodies submitted to it in groups:

1. it takes every body queued (at most ``max_group``), waits for this process's turn
   among the database's writers (the :class:`~taxaddr.db.writer.WriterQueue` on a
   SQLite file; nothing on PostgreSQL) and begins ONE transaction;
2. runs each body in submission order, each inside its own savepoint when the group
   has several: a body that raises is rolled back to its savepoint and gets its own
   exception (a refusal, a replay) — the others are unaffected;
3. commits once, then resolves every member's future. If BEGIN, a savepoint, or the
   COMMIT fails, the whole transaction is rolled back and every member that had not
   failed by itself gets :class:`DatabaseUnavailable` (503): no leaf, no answer.

No future is resolved before the commit returned, so no caller learns a result
(an audit leaf's index, a receipt) before it is durable. Bodies run one after another
in one transaction, so everything the write lock guaranteed before (gapless audit
indices, exact quotas, the replay guard) holds unchanged. While one group's commit
waits on the disk, with the GIL released, the process's other requests reach their
write phase and queue: under load groups grow by themselves, and when idle a group
is one request (no timer, no added latency).

Where the group forms: per process. Several server processes on one SQLite file
alternate whole groups under the writer queue's file lock, so the file sees one
flush per group of either process (measured in docs/performance.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.db.engine import pinned_session, unpin_session
from taxaddr.db.writer import WriterQueue
from taxaddr.errors import DatabaseUnavailable

T = TypeVar("T")
WriteBody = Callable[[Session], T]
"""A transaction's work: runs in the group's session; must not commit or roll back."""

MAX_GROUP = 64
_SAVEPOINT = "taxaddr_member"


@dataclass(eq=False)
class _Member(Generic[T]):
    body: WriteBody[T]
    future: Future[T] = field(default_factory=Future)
    result: Any = None
    error: BaseException | None = None


class GroupCommitter:
    """One writer thread per process that commits queued write bodies in groups."""

    def __init__(
        self,
        engine: Engine,
        writers: WriterQueue | None = None,
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        self.engine = engine
        self.writers = writers
        self.max_group = max_group
        # Called after the last body, just before COMMIT (tests inject a failed commit).
        self.before_commit: Callable[[], None] | None = None
        self.groups = 0  # committed or failed groups (tests, diagnostics)
        self.members = 0
        self.largest_group = 0
        self._queue: SimpleQueue[_Member[Any] | None] = SimpleQueue()
        self._session: Session | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, body: WriteBody[T]) -> Future[T]:
        """Queue ``body``; its future resolves after the group's commit returned."""
        if self._closed:
            raise DatabaseUnavailable("the database writer is shut down")
        self._ensure_thread()
        member: _Member[T] = _Member(body)
        member.future.set_running_or_notify_cancel()
        self._queue.put(member)
        return member.future

    def run(self, body: WriteBody[T]) -> T:
        """:meth:`submit` and wait (a thread's synchronous write)."""
        return self.submit(body).result()

    def close(self) -> None:
        """Stop the writer thread after the groups already queued."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)
        if self._session is not None:
            self._release_session()

    # -- the writer thread ---------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
                thread.start()
                self._thread = thread

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group: list[_Member[Any]] = [first]
            stop = False
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit_group(group)
            if stop:
                return

    def _commit_group(self, group: list[_Member[Any]]) -> None:
        self.groups += 1
        self.members += len(group)
        self.largest_group = max(self.largest_group, len(group))
        try:
            with self._turn():
                self._run_group(group)
        except BaseException as exc:  # noqa: BLE001 - every member must be answered
            failure = exc if isinstance(exc, DatabaseUnavailable) else None
            for member in group:
                if member.error is None:
                    member.result = None
                    member.error = failure or DatabaseUnavailable("database unavailable")
                    if failure is None:
                        member.error.__cause__ = exc
        finally:
            for member in group:
                if member.error is not None:
                    member.future.set_exception(member.error)
                else:
                    member.future.set_result(member.result)

    def _turn(self) -> AbstractContextManager[None]:
        return self.writers.turn() if self.writers is not None else nullcontext()

    def _run_group(self, group: list[_Member[Any]]) -> None:
        session = self._get_session()
        try:
            session.begin()
            # Savepoints on the driver connection (through the ORM each costs a statement
            # execution with its events); none for a group of one.
            raw = session.connection().connection.driver_connection if len(group) > 1 else None
            for member in group:
                if raw is not None:
                    raw.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    member.result = member.body(session)
                except Exception as exc:  # noqa: BLE001 - the member's own refusal or failure
                    member.error = _mapped(exc)
                    if raw is not None:
                        raw.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                        raw.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                        session.expunge_all()
                else:
                    if raw is not None:
                        raw.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            if any(member.error is None for member in group):
                if self.before_commit is not None:
                    self.before_commit()
                session.commit()
            else:
                session.rollback()
        except BaseException:
            self._release_session()  # the connection may be unusable: the next group opens one
            raise
        finally:
            if self._session is not None:
                session.expunge_all()

    def _get_session(self) -> Session:
        if self._session is None:
            self._session = pinned_session(self.engine, immediate=True)
        return self._session

    def _release_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        with suppress(SQLAlchemyError):
            session.rollback()
        try:
            unpin_session(session)
        except SQLAlchemyError:
            return


def _mapped(exc: Exception) -> Exception:
    """A body's driver-level failure is the database being unavailable (as in
    :func:`taxaddr.db.engine.write_transaction`)."""
    if isinstance(exc, OperationalError):
        mapped = DatabaseUnavailable("database unavailable")
        mapped.__cause__ = exc
        return mapped
    return exc
