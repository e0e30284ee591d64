"""Durability by default: what a committed audit leaf survives (issue 16 items 6 and 10)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from taxaddr.db import SQLITE_SYNCHRONOUS_ENV, make_engine
from taxaddr.errors import DatabaseUnavailable
from tests.pg import PgCluster

# PRAGMA synchronous answers a number: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
FULL, NORMAL = 2, 1


def _synchronous(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("PRAGMA synchronous")).scalar_one())
    finally:
        engine.dispose()


def test_sqlite_commits_with_synchronous_full_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SQLITE_SYNCHRONOUS_ENV, raising=False)
    assert _synchronous(f"sqlite:///{tmp_path / 'a.db'}") == FULL


def test_sqlite_synchronous_normal_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SQLITE_SYNCHRONOUS_ENV, "normal")
    assert _synchronous(f"sqlite:///{tmp_path / 'a.db'}") == NORMAL


def test_sqlite_synchronous_refuses_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SQLITE_SYNCHRONOUS_ENV, "OFF")
    with pytest.raises(DatabaseUnavailable, match=SQLITE_SYNCHRONOUS_ENV):
        _synchronous(f"sqlite:///{tmp_path / 'a.db'}")


def test_postgres_session_without_synchronous_commit_is_refused(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:  # the test cluster runs with synchronous_commit=on
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    finally:
        engine.dispose()
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    engine = make_engine(pg_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="synchronous_commit"), engine.connect():
            pass
    finally:
        engine.dispose()
