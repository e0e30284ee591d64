"""Fixtures for the store tests: records written through the real importer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import make_engine
from taxaddr.migrate import upgrade
from taxaddr.store.importer import ImportReport, import_file
from tests.store.store_helpers import SEED_ROWS, write_csv


@pytest.fixture
def seeded(engine: Engine, keystore: FileKeyStore, tmp_path: Path) -> ImportReport:
    report = import_file(engine, keystore, write_csv(tmp_path / "seed.csv", SEED_ROWS))
    assert report.ok
    return report


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A fresh, migrated SQLite database (for tests that need no PostgreSQL twin)."""
    upgrade(sqlite_url)
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s
