"""Both engines: fail-closed paths, threads, metrics, selection, policy version, input building."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from taxaddr.config import Settings
from taxaddr.errors import ConfigError, PolicyUnavailable
from taxaddr.policy import (
    Decision,
    PolicyEngine,
    address_complete,
    build_input,
    get_policy_engine,
    reset_policy_engines,
)
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.engine import parse_result
from taxaddr.policy.opa import UNBUNDLED, OpaPolicyEngine, _revision
from taxaddr.policy.sources import load_sources
from tests.policy.policy_fake_opa import FakeOpa

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
TABLE = json.loads((POLICY_DIR / "decision_table.json").read_text())["cases"]
VALID = TABLE[0]["input"]
assert TABLE[0]["expected"]["allow"] is True


def _count(engine: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "taxaddr_policy_decisions_total", {"engine": engine, "result": result}
    )
    return value or 0.0


def _observations() -> float:
    return REGISTRY.get_sample_value("taxaddr_policy_evaluation_seconds_count") or 0.0


@pytest.fixture(scope="module")
def embedded() -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(POLICY_DIR)


# --- decision validation (shared by both engines) -------------------------------------


def test_parse_result_accepts_well_formed_decisions() -> None:
    assert parse_result({"allow": True, "reasons": []}, "v") == Decision(True, (), "v")
    denied = parse_result(
        {"allow": False, "reasons": ["case_quota_exhausted", "role_forbidden"]}, "v"
    )
    assert denied.reasons == ("role_forbidden", "case_quota_exhausted")  # contract order
    assert denied.as_json() == {
        "allow": False,
        "reasons": ["role_forbidden", "case_quota_exhausted"],
    }


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "allow",
        {"reasons": []},
        {"allow": "true", "reasons": []},
        {"allow": 1, "reasons": []},
        {"allow": True},
        {"allow": False, "reasons": "role_forbidden"},
        {"allow": False, "reasons": [1]},
        {"allow": True, "reasons": ["role_forbidden"]},
        {"allow": False, "reasons": []},
    ],
)
def test_parse_result_fails_closed_on_malformed_results(raw: Any) -> None:
    with pytest.raises(PolicyUnavailable):
        parse_result(raw, "v")


# --- embedded ---------------------------------------------------------------------------


def test_embedded_is_a_policy_engine(embedded: EmbeddedPolicyEngine) -> None:
    assert isinstance(embedded, PolicyEngine)
    assert embedded.name == "embedded"
    assert embedded.policy_version.startswith("sha256:")
    assert len(embedded.policy_version) == len("sha256:") + 64
    embedded.check()


def test_embedded_from_many_threads(embedded: EmbeddedPolicyEngine) -> None:
    # The engine object was made on this thread; each worker thread builds its
    # own regorus engine (sharing one across threads panics).
    results: dict[int, list[Decision]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            out = []
            for i in range(30):
                case = TABLE[(n + i) % len(TABLE)]
                out.append((case, embedded.decide(case["input"])))
            results[n] = [d for _, d in out]
            for case, decision in out:
                assert decision.as_json() == case["expected"], case["name"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(6))


def test_embedded_counts_metrics(embedded: EmbeddedPolicyEngine) -> None:
    allow, deny, seen = _count("embedded", "allow"), _count("embedded", "deny"), _observations()
    embedded.decide(VALID)
    embedded.decide({})
    assert _count("embedded", "allow") == allow + 1
    assert _count("embedded", "deny") == deny + 1
    assert _observations() == seen + 2


def _policy_dir(tmp_path: Path, rego: str, data: str = '{"taxaddr": {"policy_data": {}}}') -> Path:
    root = tmp_path / "pol"
    root.mkdir()
    (root / "p.rego").write_text(rego)
    (root / "data.json").write_text(data)
    return root


@pytest.mark.usefixtures("collect_engines_on_this_thread")
def test_embedded_evaluation_error_fails_closed(tmp_path: Path) -> None:
    root = _policy_dir(
        tmp_path,
        "package taxaddr.disclosure\nimport rego.v1\n"
        'decision := {"allow": to_number(input.x) > 0, "reasons": []}\n',
    )
    engine = EmbeddedPolicyEngine(root)
    errors = _count("embedded", "error")
    with pytest.raises(PolicyUnavailable) as info:
        engine.decide({"x": "secret-value"})
    assert "secret-value" not in str(info.value)
    assert _count("embedded", "error") == errors + 1
    with pytest.raises(PolicyUnavailable):
        engine.check()


@pytest.mark.usefixtures("collect_engines_on_this_thread")
def test_embedded_undefined_decision_fails_closed(tmp_path: Path) -> None:
    root = _policy_dir(tmp_path, "package taxaddr.other\nimport rego.v1\nx := 1\n")
    engine = EmbeddedPolicyEngine(root)
    with pytest.raises(PolicyUnavailable):
        engine.decide(VALID)


@pytest.mark.usefixtures("collect_engines_on_this_thread")
def test_embedded_policy_that_allows_everything_is_not_ready(tmp_path: Path) -> None:
    root = _policy_dir(
        tmp_path,
        'package taxaddr.disclosure\nimport rego.v1\ndecision := {"allow": true, "reasons": []}\n',
    )
    engine = EmbeddedPolicyEngine(root)
    assert engine.decide({}).allow is True  # the engine reports what the policy says ...
    with pytest.raises(PolicyUnavailable):  # ... but readiness refuses such a policy
        engine.check()


@pytest.mark.usefixtures("collect_engines_on_this_thread")
def test_embedded_refuses_non_json_input(embedded: EmbeddedPolicyEngine) -> None:
    with pytest.raises(PolicyUnavailable):
        embedded.decide({"now": float("nan")})
    with pytest.raises(PolicyUnavailable):
        embedded.decide({"now": object()})


@pytest.mark.usefixtures("collect_engines_on_this_thread")
def test_broken_policy_fails_at_start(tmp_path: Path) -> None:
    root = _policy_dir(tmp_path, "package taxaddr.disclosure\ndecision := {{{\n")
    with pytest.raises(PolicyUnavailable):
        EmbeddedPolicyEngine(root)


@pytest.mark.parametrize(
    ("rego", "data", "why"),
    [
        (None, '{"a": {}}', "no Rego"),
        ("package taxaddr.disclosure\n", None, "no data.json"),
        ("package taxaddr.disclosure\n", "not json", "data not JSON"),
        ("package taxaddr.disclosure\n", "[1]", "data not an object"),
    ],
)
def test_unusable_policy_directory(
    tmp_path: Path, rego: str | None, data: str | None, why: str
) -> None:
    root = tmp_path / "pol"
    root.mkdir()
    if rego is not None:
        (root / "p.rego").write_text(rego)
    if data is not None:
        (root / "data.json").write_text(data)
    with pytest.raises(PolicyUnavailable):
        load_sources(root)
    with pytest.raises(PolicyUnavailable):
        load_sources(tmp_path / "missing")


def test_policy_version_covers_policy_and_data_but_not_tests(tmp_path: Path) -> None:
    root = tmp_path / "pol"
    root.mkdir()
    for name in ("disclosure.rego", "data.json", "disclosure_test.rego"):
        (root / name).write_bytes((POLICY_DIR / name).read_bytes())
    base = load_sources(root).version
    assert base == load_sources(POLICY_DIR).version
    (root / "disclosure_test.rego").write_text("package x_test\n")
    assert load_sources(root).version == base
    (root / "data.json").write_text((POLICY_DIR / "data.json").read_text() + " ")
    changed = load_sources(root).version
    assert changed != base
    (root / "disclosure.rego").write_text((POLICY_DIR / "disclosure.rego").read_text() + "\n")
    assert load_sources(root).version not in {base, changed}


# --- OPA adapter ------------------------------------------------------------------------


def test_opa_decides_and_reports_the_bundle_revision(
    fake_opa: FakeOpa, embedded: EmbeddedPolicyEngine
) -> None:
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=2000)
    assert isinstance(engine, PolicyEngine)
    assert engine.name == "opa"
    allow, deny = _count("opa", "allow"), _count("opa", "deny")
    decision = engine.decide(VALID)
    assert decision == Decision(True, (), embedded.policy_version)
    assert engine.decide({}).allow is False
    assert _count("opa", "allow") == allow + 1
    assert _count("opa", "deny") == deny + 1
    engine.check()


@pytest.mark.parametrize(
    "mode",
    [
        "error500",
        "not_json",
        "undefined",
        "no_allow",
        "allow_not_bool",
        "reasons_not_strings",
        "allow_with_reasons",
        "not_object",
    ],
)
def test_opa_fails_closed(fake_opa: FakeOpa, mode: str) -> None:
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=2000)
    fake_opa.mode = mode
    errors = _count("opa", "error")
    with pytest.raises(PolicyUnavailable):
        engine.decide(VALID)
    assert _count("opa", "error") == errors + 1
    with pytest.raises(PolicyUnavailable):
        engine.check()


def test_opa_slower_than_the_timeout_fails_closed(fake_opa: FakeOpa) -> None:
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=100)
    fake_opa.delay = 0.6
    with pytest.raises(PolicyUnavailable) as info:
        engine.decide(VALID)
    assert "100 ms" in info.value.message


def test_opa_answer_trickling_past_the_deadline_fails_closed(fake_opa: FakeOpa) -> None:
    # requests bounds each socket read, not the exchange: the adapter's own
    # deadline must refuse an answer that completes too late.
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=150)
    fake_opa.mode = "trickle"
    with pytest.raises(PolicyUnavailable) as info:
        engine.decide(VALID)
    assert "150 ms" in info.value.message


def test_opa_server_down_fails_closed(fake_opa: FakeOpa) -> None:
    url = fake_opa.url
    fake_opa.shutdown()
    fake_opa.server_close()
    engine = OpaPolicyEngine(url, timeout_ms=250)
    with pytest.raises(PolicyUnavailable):
        engine.decide(VALID)
    with pytest.raises(PolicyUnavailable):
        engine.check()


def test_opa_unhealthy_is_not_ready(fake_opa: FakeOpa) -> None:
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=2000)
    fake_opa.mode = "unhealthy"
    assert engine.decide(VALID).allow is True  # decisions still come back ...
    with pytest.raises(PolicyUnavailable):  # ... but the bundle is not reported active
        engine.check()


def test_opa_from_many_threads(fake_opa: FakeOpa) -> None:
    engine = OpaPolicyEngine(fake_opa.url, timeout_ms=5000)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                case = TABLE[(n * 5 + i) % len(TABLE)]
                assert engine.decide(case["input"]).as_json() == case["expected"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize(
    "url", ["ftp://opa:8181", "http://", "http://opa:8181/v1/data", "http://opa:8181/?x=1"]
)
def test_opa_url_must_be_a_base_url(url: str) -> None:
    with pytest.raises(ConfigError):
        OpaPolicyEngine(url, timeout_ms=250)


def test_opa_default_ports() -> None:
    assert OpaPolicyEngine("https://opa.internal", 250)._port == 443
    assert OpaPolicyEngine("http://opa.internal/", 250)._port == 80


@pytest.mark.parametrize(
    ("provenance", "expected"),
    [
        ({"bundles": {"taxaddr": {"revision": "r1"}, "other": {"revision": "r2"}}}, "r1"),
        ({"bundles": {"policy": {"revision": "r3"}}}, "r3"),
        ({"bundles": {"a": {"revision": "r1"}, "b": {"revision": "r2"}}}, UNBUNDLED),
        ({"bundles": {"taxaddr": {"revision": ""}}}, UNBUNDLED),
        ({"bundles": {}}, UNBUNDLED),
        ({"version": "0.61.0"}, UNBUNDLED),
        (None, UNBUNDLED),
    ],
)
def test_revision_from_provenance(provenance: Any, expected: str) -> None:
    assert _revision(provenance) == expected


# --- selection and input ----------------------------------------------------------------


def test_get_policy_engine_selects_once_per_configuration(fake_opa: FakeOpa) -> None:
    reset_policy_engines()
    embedded_settings = Settings(env="test", policy_dir=POLICY_DIR)
    first = get_policy_engine(embedded_settings)
    assert first.name == "embedded"
    assert get_policy_engine(Settings(env="test", policy_dir=POLICY_DIR)) is first
    opa = get_policy_engine(
        Settings(env="test", policy_engine="opa", opa_url=fake_opa.url, opa_timeout_ms=2000)
    )
    assert opa.name == "opa"
    assert opa is not first
    assert isinstance(opa, OpaPolicyEngine)
    assert opa.timeout_s == 2.0
    assert opa.decide(VALID).allow is True
    reset_policy_engines()
    assert get_policy_engine(embedded_settings) is not first
    reset_policy_engines()


def test_default_opa_timeout_is_250_ms() -> None:
    settings = Settings(env="test", policy_engine="opa", opa_url="http://127.0.0.1:1")
    engine = get_policy_engine(settings)
    assert isinstance(engine, OpaPolicyEngine)
    assert engine.timeout_s == 0.25
    reset_policy_engines()


def test_build_input_is_the_contract_document(embedded: EmbeddedPolicyEngine) -> None:
    case = dict(VALID["case"])
    doc = build_input(
        requester={"id": "hsi-agent-0042", "agency": "ICE-HSI", "role": "requester", "fp": "x"},
        case=case,
        usage=2,
        requester_usage={"open_cases": 3, "subjects_24h": 7, "other": 1},
        subject_ref=VALID["request"]["subject_ref"],
        address_complete=True,
        tax_periods=("2024",),
        statute="8 U.S.C. 1253(a)(1)",
        reason=VALID["request"]["reason"],
        now=datetime(2026, 11, 24, 16, 0, 0, 999, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert doc == VALID
    assert embedded.decide(doc).allow is True
    assert build_input(**{**_args(), "now": None})["now"].endswith("Z")
    with pytest.raises(ValueError, match="aware"):
        build_input(**{**_args(), "now": datetime(2026, 1, 1)})


def _args() -> dict[str, Any]:
    return {
        "requester": {"id": "a", "agency": "b", "role": "requester"},
        "case": {},
        "usage": 0,
        "requester_usage": {"open_cases": 0, "subjects_24h": 0},
        "subject_ref": "r",
        "address_complete": False,
        "tax_periods": [],
        "statute": "s",
        "reason": "r",
        "now": datetime.now(UTC),
    }


@pytest.mark.parametrize(
    ("address", "complete"),
    [
        ({"street": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701"}, True),
        ({"street": "1 Main St", "city": "Springfield", "state": "IL", "zip": " "}, False),
        ({"street": "1 Main St", "city": "Springfield", "state": "IL"}, False),
        ({"street": "1 Main St", "city": None, "state": "IL", "zip": "62701"}, False),
        ({"street": 1, "city": "Springfield", "state": "IL", "zip": "62701"}, False),
        (None, False),
    ],
)
def test_address_complete(address: Any, complete: bool) -> None:
    assert address_complete(address) is complete
