"""deploy/opa: the decision-log mask and the OPA configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
import regorus

OPA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "opa"


def test_mask_removes_the_reason_and_subject_pseudonyms() -> None:
    engine = regorus.Engine()
    engine.add_policy_from_file(str(OPA_DIR / "mask.rego"))
    assert engine.eval_rule("data.system.log.mask") == {
        "/input/request/reason",
        "/input/request/subject_ref",
        "/input/case/subject_refs",
    }


@pytest.mark.parametrize("name", ["config.yaml", "config-local.yaml"])
def test_configs_load_the_taxaddr_bundle_and_mask_decision_logs(name: str) -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((OPA_DIR / name).read_text())
    bundle = config["bundles"]["taxaddr"]
    assert bundle["service"] in config["services"]
    assert bundle["resource"].endswith(".tar.gz")
    assert config["decision_logs"]["mask_decision"] == "/system/log/mask"
    # only a signed bundle, verified under an explicit key id, is activated
    keyid = bundle["signing"]["keyid"]
    assert keyid in config["keys"]
    assert config["keys"][keyid]["algorithm"] in {"RS256", "ES256"}
