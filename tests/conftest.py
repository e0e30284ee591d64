"""Shared fixtures: isolated key directories, fresh databases (SQLite and PostgreSQL).

Every test owns its data: each database fixture creates a new database and
drops it afterwards. PostgreSQL tests run against a real server started once per
session (``tests/pg.py``). Set ``TAXADDR_TEST_NO_POSTGRES=1`` only for a quick
local loop; ``make test`` never sets it, so PostgreSQL tests always run in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from taxaddr.config import get_settings
from taxaddr.crypto.keystore import FileKeyStore, init_dev_keys
from taxaddr.db import make_engine
from taxaddr.migrate import upgrade
from tests.pg import PgCluster, start_cluster

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if os.environ.get("TAXADDR_TEST_NO_POSTGRES") == "1":
        pytest.skip("PostgreSQL disabled for this local run (TAXADDR_TEST_NO_POSTGRES=1)")
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    init_dev_keys(root)
    return root


@pytest.fixture
def keystore(keys_dir: Path) -> FileKeyStore:
    return FileKeyStore(keys_dir)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'taxaddr.db'}"


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    name, url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'taxaddr.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade(url)
    return str(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keys_dir: Path
) -> Iterator[dict[str, str]]:
    """TAXADDR_* settings for a test: its own keys and SQLite database."""
    values = {
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(keys_dir),
        "TAXADDR_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TAXADDR_POLICY_DIR": str(REPO / "policies"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()
