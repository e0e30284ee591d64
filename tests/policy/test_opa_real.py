"""The OPA adapter against a real ``opa run --server`` (not the fake Data API).

The bundle is the one ``taxaddr policy bundle`` writes (the CLI, as an
operator runs it). Checked: the bundle activates (``/health?bundles``), the
decision's provenance revision is the embedded engine's policy version, OPA
stopped with SIGSTOP makes the adapter give up at its deadline
(``PolicyUnavailable``, the API's 503), OPA killed fails ``decide`` and
``check`` (``/readyz``), and OPA restarted on the same port answers the same
adapter instance again (no restart of the service, its pooled connection to
the dead server is not reused into an error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from taxaddr.errors import PolicyUnavailable
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.opa import OpaPolicyEngine
from tests.policy.real_opa import RealOpa, opa_with_bundle, require_opa

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
CASES = json.loads((POLICY_DIR / "decision_table.json").read_text())["cases"]
VALID = CASES[0]["input"]
TIMEOUT_MS = 300

pytestmark = pytest.mark.xdist_group("real_opa_adapter")


def cli_bundle(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``taxaddr policy bundle --out OUT …`` as a separate process (the real CLI)."""
    env = {**os.environ, "TAXADDR_ENV": "test", "TAXADDR_POLICY_DIR": str(POLICY_DIR)}
    exe = Path(sys.executable).parent / "taxaddr"
    return subprocess.run(
        [str(exe), "policy", "bundle", "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-bundle") / "taxaddr-policy.tar.gz"
    done = cli_bundle(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def opa(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOpa]:
    server = opa_with_bundle(require_opa(), tmp_path_factory.mktemp("opa-real"), bundle)
    server.start()
    yield server
    server.kill()


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.loads(resp.read())
    assert isinstance(doc, dict)
    return doc


def test_cli_bundle_activates_and_its_revision_is_the_embedded_policy_version(
    opa: RealOpa, bundle: Path
) -> None:
    embedded = EmbeddedPolicyEngine(POLICY_DIR)
    assert opa.health(bundles=True) == 200
    with tarfile.open(bundle, "r:gz") as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile(".manifest").read())  # type: ignore[union-attr]
    assert not any(name.endswith("_test.rego") for name in names)
    assert manifest["revision"] == embedded.policy_version
    # OPA reports the bundle it activated with that revision
    status = _get_json(f"{opa.url}/v1/data/taxaddr/policy_data?provenance=true")
    bundles = status["provenance"]["bundles"]  # type: ignore[index]
    assert [b["revision"] for b in bundles.values()] == [embedded.policy_version]

    engine = OpaPolicyEngine(opa.url, timeout_ms=3000)
    engine.check()
    for case in CASES[:10]:
        remote = engine.decide(case["input"])
        local = embedded.decide(case["input"])
        assert (remote.allow, remote.reasons) == (local.allow, local.reasons), case
        assert remote.policy_version == embedded.policy_version


def test_sigstop_times_out_and_the_same_adapter_recovers(opa: RealOpa) -> None:
    engine = OpaPolicyEngine(opa.url, timeout_ms=TIMEOUT_MS)
    assert engine.decide(VALID).allow is True  # a pooled keep-alive connection now exists
    opa.pause()
    try:
        started = time.monotonic()
        with pytest.raises(PolicyUnavailable, match="did not answer within"):
            engine.decide(VALID)
        elapsed = time.monotonic() - started
        with pytest.raises(PolicyUnavailable):
            engine.check()
    finally:
        opa.resume()
    assert TIMEOUT_MS / 1000 * 0.9 <= elapsed < TIMEOUT_MS / 1000 + 2.0
    assert engine.decide(VALID).allow is True


def test_killed_then_restarted_on_the_same_port(opa: RealOpa) -> None:
    engine = OpaPolicyEngine(opa.url, timeout_ms=TIMEOUT_MS)
    assert engine.decide(VALID).allow is True
    port = opa.port
    opa.kill()
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        engine.decide(VALID)
    with pytest.raises(PolicyUnavailable):
        engine.check()  # what /readyz asks: not ready
    opa.start()
    assert opa.port == port
    # the very next request of the same adapter (no new client, no retry) succeeds
    decision = engine.decide(VALID)
    assert decision.allow is True
    assert decision.policy_version == EmbeddedPolicyEngine(POLICY_DIR).policy_version
    engine.check()
