"""The disclosure API with TAXADDR_POLICY_ENGINE=opa against a real OPA server.

A real ``opa run --server`` with the bundle of ``taxaddr policy bundle``
answers the service's decisions. Faults are real too: OPA stopped with
SIGSTOP (the adapter's deadline passes), OPA killed, OPA restarted on the same
port. Each fault is a 503 ``policy_unavailable`` with no leaf (fail closed),
``/readyz`` is not 200 while OPA is gone, and the next request after OPA is
back succeeds without restarting taxaddr.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taxaddr.config import Settings
from taxaddr.policy.bundle import write_bundle
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.sources import load_sources
from tests.api.apikit import Identity, World, body, leaves, run_server, tree_size
from tests.policy.real_opa import RealOpa, opa_with_bundle, require_opa

pytestmark = pytest.mark.xdist_group("real_opa_api")


@pytest.fixture(scope="module")
def opa(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOpa]:
    binary = require_opa()
    workdir = tmp_path_factory.mktemp("opa-api")
    bundle = write_bundle(
        load_sources(world.settings.policy_dir), workdir / "taxaddr-policy.tar.gz"
    ).path
    server = opa_with_bundle(binary, workdir, bundle).start()
    yield server
    server.kill()


def _settings(world: World, opa: RealOpa) -> Settings:
    return world.settings.model_copy(
        update={"policy_engine": "opa", "opa_url": opa.url, "opa_timeout_ms": 400}
    )


def test_real_opa_decides_and_the_leaf_names_the_bundle_revision(
    world: World, agent: Identity, opa: RealOpa
) -> None:
    with run_server(world, _settings(world, opa)) as srv, srv.client(agent) as client:
        assert client.get("/readyz").status_code == 200
        allowed = client.post("/v1/disclosures", json=body(world.case()))
        denied = client.post(
            "/v1/disclosures", json=body(world.case(), reason="immigration enforcement")
        )
    assert allowed.status_code == 200, allowed.text
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "reason_insufficient"
    index = allowed.json()["audit"]["leaf_index"]
    leaf = leaves(world, index, index + 1)[0]
    # the OPA bundle's revision (its provenance) is the embedded engine's policy version
    assert leaf["policy_version"] == EmbeddedPolicyEngine(world.settings.policy_dir).policy_version


def test_stopped_killed_and_restarted_opa(
    world: World, agent: Identity, opa: RealOpa, tmp_path: Path
) -> None:
    with run_server(world, _settings(world, opa)) as srv, srv.client(agent) as client:
        assert client.post("/v1/disclosures", json=body(world.case())).status_code == 200

        # 1. OPA stopped (SIGSTOP): the adapter's 400 ms deadline passes -> 503, no leaf
        before = tree_size(world)
        opa.pause()
        try:
            stalled = client.post("/v1/disclosures", json=body(world.case()))
        finally:
            opa.resume()
        assert stalled.status_code == 503
        assert stalled.json()["error"]["code"] == "policy_unavailable"
        assert "address" not in stalled.json()
        assert tree_size(world) == before

        # 2. OPA killed: 503 and not ready
        opa.kill()
        gone = client.post("/v1/disclosures", json=body(world.case()))
        ready = client.get("/readyz")
        assert gone.status_code == 503
        assert gone.json()["error"]["code"] == "policy_unavailable"
        assert ready.status_code != 200
        assert tree_size(world) == before

        # 3. OPA restarted on the same port: the next request succeeds, taxaddr untouched
        opa.start()
        back = client.post("/v1/disclosures", json=body(world.case()))
        assert back.status_code == 200, back.text
        assert client.get("/readyz").status_code == 200
        assert tree_size(world) == before + 1
