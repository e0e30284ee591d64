"""Policy fixtures: the real policies/ directory and a local server speaking OPA's Data API.

The fake OPA follows the documented REST Data API closely enough for the
adapter: ``POST /v1/data/{path}`` with ``{"input": …}`` answers 200
``{"result": …}`` (no ``result`` key when the document is undefined), 400 with
``{"code", "message"}`` for a body that is not JSON or has no object shape,
``?provenance=true`` adds ``{"provenance": {"version", "bundles": {name: {"revision"}}}}``,
and ``GET /health?bundles`` is 200 once "bundles" are active. It answers with
regorus over the same policy files (one engine per server thread). ``mode``
injects the faults the adapter must fail closed on.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taxaddr.policy.sources import PolicySources, load_sources
from tests.policy.policy_fake_opa import FakeOpa

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"


@pytest.fixture
def collect_engines_on_this_thread() -> Iterator[None]:
    # A regorus engine may only be dropped on its own thread. Engines left in
    # reference cycles (e.g. frames held by a caught exception's traceback)
    # would otherwise be collected by whichever thread next runs the cyclic GC,
    # possibly a fake-OPA handler thread, which leaks them with a warning.
    yield
    gc.collect()


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    return POLICY_DIR


@pytest.fixture(scope="session")
def sources() -> PolicySources:
    return load_sources(POLICY_DIR)


@pytest.fixture
def fake_opa(sources: PolicySources) -> Iterator[FakeOpa]:
    server = FakeOpa(sources)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def decision_table() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((POLICY_DIR / "decision_table.json").read_text())[
        "cases"
    ]
    return cases
