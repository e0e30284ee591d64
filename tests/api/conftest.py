"""API fixtures: one world (keys, database, issuer, records) and one server per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.apikit import Identity, RunningServer, World, build_world, cleanup, run_server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("api-world"))
    w.identity("agent-1")
    w.identity("agent-2")
    w.identity("overseer", role="oversight", agency="TIGTA")
    w.identity("prometheus", role="monitor", agency="TIGTA")
    w.identity("root-admin", role="admin", agency="IRS")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[RunningServer]:
    with run_server(world) as srv:
        yield srv


@pytest.fixture(scope="module")
def agent(world: World) -> Identity:
    return world.identities["agent-1"]


@pytest.fixture(scope="module")
def overseer(world: World) -> Identity:
    return world.identities["overseer"]


@pytest.fixture(scope="module")
def monitor(world: World) -> Identity:
    return world.identities["prometheus"]
