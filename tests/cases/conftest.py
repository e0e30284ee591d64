"""Fixtures for the case-reference tests: a migrated database, a trusted issuer, a token maker."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.config import Settings
from taxaddr.db import make_engine
from taxaddr.migrate import upgrade
from tests.cases.casekit import TokenMaker, trust


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cases-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_engine(migrated_sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """A fresh migrated SQLite database (copied from a template migrated once)."""
    path = tmp_path / "cases.db"
    shutil.copyfile(migrated_sqlite_template, path)
    eng = make_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", database_url="sqlite:///unused.db", keys_dir=tmp_path / "keys")


@pytest.fixture
def issuer_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def session(sqlite_engine: Engine, issuer_key: Ed25519PrivateKey) -> Iterator[Session]:
    """A session on a SQLite database that trusts the test issuer's key."""
    trust(sqlite_engine, issuer_key)
    with Session(sqlite_engine) as s:
        yield s


@pytest.fixture
def tokens(issuer_key: Ed25519PrivateKey) -> TokenMaker:
    return TokenMaker(issuer_key)
