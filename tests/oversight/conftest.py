"""Fixtures for oversight tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).parent))

from oversight_seed import seed

from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore


@pytest.fixture
def settings(db_url: str, keys_dir: Path) -> Settings:
    return Settings(env="test", database_url=db_url, keys_dir=keys_dir)


@pytest.fixture
def seeded(engine: Engine, keystore: FileKeyStore) -> Engine:
    seed(engine, keystore.pseudonym_key())
    return engine
