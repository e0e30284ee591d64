"""Background WAL checkpoints and the frozen start-up heap (server process plumbing)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from sqlalchemy import text

from taxaddr.api.server import freeze_startup_heap
from taxaddr.db import (
    BACKGROUND_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    background_checkpoints,
    make_engine,
    stop_background_checkpoints,
)


def _wal_frames(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_background_thread_checkpoints_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{db}")
    checkpointer = WalCheckpointer(engine, interval=0.05)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
            for _ in range(200):
                conn.execute(text("INSERT INTO t VALUES (randomblob(4000))"))
        # the pages are in the WAL; the database file holds none of them yet
        assert db.stat().st_size < 100_000
        deadline = time.monotonic() + 10
        while checkpointer.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpointer.runs >= 2
        assert db.stat().st_size > 800_000  # copied into the database by the thread
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == BACKGROUND_AUTOCHECKPOINT_PAGES  # commits no longer checkpoint
    finally:
        checkpointer.stop()
        engine.dispose()
    assert not checkpointer.alive


def test_one_checkpointer_per_engine_and_none_for_memory(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        first = background_checkpoints(engine)
        assert first is not None
        assert background_checkpoints(engine) is first
        assert background_checkpoints(make_engine("sqlite://")) is None
    finally:
        stop_background_checkpoints()
        engine.dispose()
    assert first is not None
    assert not first.alive


def test_checkpoint_of_a_vanished_database_reports_false(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'e.db'}")
    checkpointer = WalCheckpointer(engine, interval=60)
    try:
        (tmp_path / "gone").rmdir()  # the directory is gone: no connection can open
        assert checkpointer.checkpoint(engine) is False
        assert checkpointer.runs == 0
    finally:
        checkpointer.stop()
        engine.dispose()


def test_startup_heap_is_frozen() -> None:
    gc.unfreeze()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000  # the imported libraries at least
    finally:
        gc.unfreeze()
