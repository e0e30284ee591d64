"""Decision-core fixtures: one world (keys, database, issuer, records) per module, no server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.apikit import World, build_world, cleanup


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("core-world"))
    w.identity("agent-1")
    w.identity("agent-2")
    w.identity("overseer", role="oversight", agency="TIGTA")
    w.identity("prometheus", role="monitor", agency="TIGTA")
    yield w
    cleanup()
