"""Background WAL checkpoints of a SQLite database file."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from taxaddr.db.engine import sqlite_file

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
