"""policies/decision_table.json through every engine: embedded and OPA (local Data API server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taxaddr.errors import order_reasons
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.opa import OpaPolicyEngine
from tests.policy.policy_fake_opa import FakeOpa

TABLE = json.loads(
    (Path(__file__).resolve().parents[2] / "policies" / "decision_table.json").read_text()
)["cases"]
IDS = [case["name"].replace(" ", "-") for case in TABLE]


@pytest.fixture(scope="module")
def embedded() -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(Path(__file__).resolve().parents[2] / "policies")


def test_table_covers_every_code_and_both_outcomes() -> None:
    seen = {code for case in TABLE for code in case["expected"]["reasons"]}
    assert len(seen) == 16
    assert any(case["expected"]["allow"] for case in TABLE)
    for case in TABLE:
        expected = case["expected"]
        assert expected["allow"] == (expected["reasons"] == [])
        assert expected["reasons"] == order_reasons(expected["reasons"])


@pytest.mark.parametrize("case", TABLE, ids=IDS)
def test_embedded(embedded: EmbeddedPolicyEngine, case: dict[str, Any]) -> None:
    decision = embedded.decide(case["input"])
    assert decision.as_json() == case["expected"]
    assert decision.policy_version == embedded.policy_version


def test_opa_adapter(fake_opa: FakeOpa, embedded: EmbeddedPolicyEngine) -> None:
    # One server for the whole table (a server per case would dominate the run time).
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=2000)
    failures = []
    for case in TABLE:
        decision = engine.decide(case["input"])
        if decision.as_json() != case["expected"]:
            failures.append((case["name"], decision.as_json()))
        assert decision.policy_version == embedded.policy_version
    assert failures == []
    assert len(fake_opa.requests) == len(TABLE)
    assert {r["path"] for r in fake_opa.requests} == {"/v1/data/taxaddr/disclosure/decision"}
    assert all(r["query"] == {"provenance": ["true"]} for r in fake_opa.requests)
