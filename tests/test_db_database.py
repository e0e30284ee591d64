"""The Database of each dialect, opened from settings: what it owns (write serialization,
snapshot reads, insert-or-ignore, the writer queue) on a real SQLite file and a real
PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.pool import StaticPool

from taxaddr.config import Settings
from taxaddr.db import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    WriterQueue,
    open_database,
    opened,
)
from taxaddr.db.repositories import requesters
from taxaddr.db.schema import RequesterRow, UsedRequestId
from taxaddr.migrate import upgrade


def _settings(db_url: str, keys_dir: Path) -> Settings:
    return Settings(env="test", database_url=db_url, keys_dir=keys_dir)


def _requester(requester_id: str) -> dict[str, object]:
    return {
        "id": requester_id,
        "fingerprint": requester_id.ljust(64, "0"),
        "agency": "IRS-CI",
        "role": "requester",
        "created_at": datetime.now(UTC),
    }


def test_open_database_picks_the_implementation_from_the_url(db_url: str, keys_dir: Path) -> None:
    database: Database = open_database(_settings(db_url, keys_dir))
    try:
        if db_url.startswith("sqlite"):
            assert isinstance(database, SqliteDatabase)
            assert database.embedded
            queue = database.writer_queue()
            assert isinstance(queue, WriterQueue)
            queue.close()
        else:
            assert isinstance(database, PostgresDatabase)
            assert not database.embedded
            assert database.writer_queue() is None
            assert database.background_checkpoints() is None
        assert database.statements.dialect_name == database.engine.dialect.name
    finally:
        database.dispose()


def test_insert_ignore_inserts_once_and_the_replay_guard_refuses_a_second_use(
    db_url: str, keys_dir: Path
) -> None:
    upgrade(db_url)
    with opened(_settings(db_url, keys_dir)) as database:
        with database.write_transaction() as session:
            assert database.insert_ignore(session, RequesterRow, _requester("alice"))
            assert not database.insert_ignore(session, RequesterRow, _requester("alice"))
        now = datetime.now(UTC)
        with database.write_transaction() as session:
            assert requesters.remember_request_id(session, "alice", "r-1", 0, now)
            assert not requesters.remember_request_id(session, "alice", "r-1", 1, now)
            assert requesters.remember_request_id(session, "alice", "r-2", 2, now)
        with database.snapshot_session() as session:
            row = requesters.by_fingerprint(session, "alice".ljust(64, "0"))
            assert row is not None
            assert row[:3] == ("alice", "IRS-CI", "requester")
            assert row[3] is None
            used = session.execute(select(func.count()).select_from(UsedRequestId)).scalar()
            assert used == 2
            stored = session.execute(select(UsedRequestId.used_at)).scalars().first()
            assert stored is not None
            assert abs((stored.replace(tzinfo=UTC) - now).total_seconds()) < 1


def test_a_rolled_back_write_leaves_nothing(db_url: str, keys_dir: Path) -> None:
    upgrade(db_url)
    with opened(_settings(db_url, keys_dir)) as database:
        try:
            with database.write_transaction() as session:
                database.insert_ignore(session, RequesterRow, _requester("bob"))
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        pinned = database.pinned_session(immediate=True)
        try:
            assert requesters.by_fingerprint(pinned, "bob".ljust(64, "0")) is None
        finally:
            database.unpin(pinned)


def test_a_bulk_writer_gives_its_connection_back_with_its_own_settings(tmp_path: Path) -> None:
    """The importer's bulk settings (64 MB page cache, rare checkpoints, no memory map)
    must not stay on the pooled connection that later serves requests."""
    from taxaddr.db import make_engine
    from taxaddr.db.engine import SQLITE_MMAP_BYTES, bulk_write_connection

    engine = make_engine(f"sqlite:///{tmp_path / 'bulk.db'}", poolclass=StaticPool)

    def settings() -> tuple[int, int, int]:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())
                for name in ("cache_size", "wal_autocheckpoint", "mmap_size")
            )

    before = settings()
    assert before[2] == SQLITE_MMAP_BYTES
    with bulk_write_connection(engine) as conn:
        assert int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one()) != before[0]
    assert settings() == before
    engine.dispose()
