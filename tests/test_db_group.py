"""Group commit (taxaddr.db.group): one commit for several bodies, each in its savepoint;
a failed commit fails every member with 503 and leaves nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taxaddr.db import WriterQueue, make_engine
from taxaddr.db.group import GroupCommitter
from taxaddr.errors import DatabaseUnavailable


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE grouped (k INTEGER PRIMARY KEY, v TEXT)"))
    yield eng
    eng.dispose()


def _insert(k: int) -> object:
    def body(session: Session) -> int:
        session.execute(text("INSERT INTO grouped (k, v) VALUES (:k, 'x')"), {"k": k})
        return k

    return body


def _rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT k FROM grouped ORDER BY k"))]


def _held_group(committer: GroupCommitter, bodies: list[object]) -> list[Future[object]]:
    """Submit ``bodies`` while the writer thread is busy, so they form one group."""
    release = threading.Event()
    started = threading.Event()

    def blocker(session: Session) -> None:
        started.set()
        release.wait(10)

    first = committer.submit(blocker)
    started.wait(10)
    futures = [committer.submit(b) for b in bodies]  # type: ignore[arg-type]
    release.set()
    first.result(10)
    return futures


def test_one_commit_for_a_group_and_a_refusal_stays_its_own(engine: Engine) -> None:
    committer = GroupCommitter(engine, WriterQueue(engine))
    try:

        def refuses(session: Session) -> None:
            session.execute(text("INSERT INTO grouped (k, v) VALUES (99, 'x')"))
            raise LookupError("refused")

        futures = _held_group(committer, [_insert(1), refuses, _insert(2), _insert(1)])
        assert futures[0].result(10) == 1
        with pytest.raises(LookupError):
            futures[1].result(10)
        assert futures[2].result(10) == 2
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            futures[3].result(10)  # its own constraint failure, not the group's
        assert committer.largest_group == 4
        assert _rows(engine) == [1, 2]  # the refused member's insert was rolled back alone
    finally:
        committer.close()


def test_a_failed_commit_fails_every_member_with_503_and_writes_nothing(engine: Engine) -> None:
    committer = GroupCommitter(engine, WriterQueue(engine))
    seen: list[bool] = []

    def failing_commit() -> None:
        # no member's future is resolved before the commit returned
        seen.append(any(f.done() for f in futures))
        raise OperationalError("COMMIT", {}, OSError("disk I/O error"))

    futures: list[Future[object]] = []
    try:
        release = threading.Event()
        started = threading.Event()

        def blocker(session: Session) -> None:
            started.set()
            release.wait(10)

        first = committer.submit(blocker)
        started.wait(10)
        committer.before_commit = failing_commit
        futures.extend(committer.submit(_insert(k)) for k in (1, 2, 3))  # type: ignore[arg-type]
        release.set()
        with pytest.raises(DatabaseUnavailable):
            first.result(10)
        for future in futures:
            with pytest.raises(DatabaseUnavailable):
                future.result(10)
        assert seen == [False, False]
        assert _rows(engine) == []
        # the next group commits normally on a fresh connection
        committer.before_commit = None
        assert committer.run(_insert(7)) == 7
        assert _rows(engine) == [7]
    finally:
        committer.close()


def test_submit_after_close_is_unavailable(engine: Engine) -> None:
    committer = GroupCommitter(engine)
    assert committer.run(_insert(1)) == 1  # type: ignore[arg-type]
    committer.close()
    with pytest.raises(DatabaseUnavailable):
        committer.submit(_insert(2))  # type: ignore[arg-type]
