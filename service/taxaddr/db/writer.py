"""The cross-process writer queue of a SQLite database file."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from queue import SimpleQueue

from sqlalchemy import Engine

from taxaddr.db.engine import sqlite_file
from taxaddr.errors import DatabaseUnavailable

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
