"""Fixtures for oversight tests: seeded databases, and a running server with scripted traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from tests.oversight.oversight_e2e import RunningServer, Script, World, run_script
from tests.oversight.oversight_seed import seed


@pytest.fixture
def settings(db_url: str, keys_dir: Path) -> Settings:
    return Settings(env="test", database_url=db_url, keys_dir=keys_dir)


@pytest.fixture
def seeded(engine: Engine, keystore: FileKeyStore) -> Engine:
    seed(engine, keystore.pseudonym_key())
    return engine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tests.api.apikit import build_world, cleanup

    w = build_world(tmp_path_factory.mktemp("oversight-world"))
    w.identity("agent-1")
    w.identity("overseer", role="oversight", agency="TIGTA")
    w.identity("prometheus", role="monitor", agency="TIGTA")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[RunningServer]:
    from tests.api.apikit import run_server

    with run_server(world) as srv:
        yield srv


@pytest.fixture(scope="module")
def script(server: RunningServer, world: World) -> Script:
    return run_script(server, world.identities["agent-1"])
