"""One policy, two engines: the embedded engine and a real OPA server decide alike.

Real OPA (``opa run --server`` with the bundle from ``taxaddr policy bundle``),
reached through the service's own OPA adapter, and the embedded engine
(regorus) evaluate the same generated inputs: the decision table's valid input
with one or more fields missing, ``null``, of every other JSON type, empty,
huge or non-ASCII; timestamps and numbers around the edges the policy reads;
and arbitrary JSON documents. Decisions must be identical, and neither engine
may fail to decide (an engine error would be a 503 on one side and a decision
on the other). Also here: ``opa check --strict`` and ``opa test`` over
``policies/`` under real OPA (the same ``*_test.rego`` run under regorus in
``test_policy_rego_units.py``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from taxaddr.policy.bundle import write_bundle
from taxaddr.policy.embedded import EmbeddedPolicyEngine
from taxaddr.policy.opa import OpaPolicyEngine
from taxaddr.policy.sources import load_sources
from tests.policy.real_opa import RealOpa, opa_with_bundle, require_opa

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
TABLE = json.loads((POLICY_DIR / "decision_table.json").read_text())["cases"]
VALID: dict[str, Any] = TABLE[0]["input"]
assert TABLE[0]["expected"]["allow"] is True

# At least 2,000 generated inputs per run (issue 15); more on request.
EXAMPLES = int(os.environ.get("TAXADDR_DIFFERENTIAL_EXAMPLES", "2000"))

pytestmark = pytest.mark.xdist_group("real_opa_differential")


@pytest.fixture(scope="module")
def opa_binary() -> str:
    return require_opa()


@pytest.fixture(scope="module")
def real_opa(opa_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOpa]:
    workdir = tmp_path_factory.mktemp("opa-differential")
    bundle = write_bundle(load_sources(POLICY_DIR), workdir / "taxaddr-policy.tar.gz").path
    server = opa_with_bundle(opa_binary, workdir, bundle).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engines(real_opa: RealOpa) -> tuple[EmbeddedPolicyEngine, OpaPolicyEngine]:
    return EmbeddedPolicyEngine(POLICY_DIR), OpaPolicyEngine(real_opa.url, timeout_ms=5000)


# --- real OPA over policies/ -----------------------------------------------------------


def test_opa_check_strict_passes(opa_binary: str) -> None:
    run = subprocess.run(
        [opa_binary, "check", "--strict", str(POLICY_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_opa_test_passes_every_rego_unit_test(opa_binary: str) -> None:
    run = subprocess.run(
        [opa_binary, "test", str(POLICY_DIR), "-v", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results = json.loads(run.stdout)
    failed = [r["name"] for r in results if r.get("fail") or r.get("error")]
    assert failed == [], failed
    names = {r["name"] for r in results}
    rego_tests = (POLICY_DIR / "disclosure_test.rego").read_text().count("\ntest_")
    assert len(names) == rego_tests  # every test ran, none was skipped
    assert run.returncode == 0


# --- generated inputs --------------------------------------------------------------------

HUGE = "x" * 70_000
WRONG_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    10**30,
    True,
    False,
    "",
    "requester",
    "criminal",
    "ÄÖÜ ünïcødé ✓ 北京",
    HUGE,
    [],
    [""],
    [1, "2024"],
    {},
    {"a": 1},
]


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path into the document (objects by key, arrays by index)."""
    found: list[tuple[str | int, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.extend(_paths(inner, (*prefix, key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(_paths(inner, (*prefix, index)))
    return found


VALID_PATHS = _paths(VALID)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=60)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

digits = st.integers(min_value=0, max_value=9999)
timestamps = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
        digits,
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from(["", ".5", ".999999999", ".0000000001", ".123"]),
        st.sampled_from(["Z", "z", "+00:00", "-23:59", "+24:00", "+02:00", "", " Z"]),
    ),
    st.sampled_from(
        [
            "2026-11-24T21:00:00Z",
            "2026-11-24T20:59:59.999999999Z",
            "2099-12-31T23:59:59-23:59",
            "1970-01-01T00:00:00+23:59",
            "2262-04-11T23:47:16Z",
            "2024-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
        ]
    ),
)
window_numbers = st.one_of(
    st.integers(min_value=1795554000 - 2, max_value=1795554000 + 2),
    st.sampled_from([0, -1, 4500000000, 4500000001, 10**11, 2**63, 2**64 + 1, 1e300]),
    st.floats(min_value=1795553998, max_value=1795554002, allow_nan=False),
)
count_numbers = st.one_of(
    st.integers(min_value=-2, max_value=7),
    st.sampled_from([10**9, 10**9 + 1, 2**53, 2**53 + 1, 2**63, 1e12, 0.5, 4.0, -0.0]),
)

# The personal limits (data.json: 50 open cases, 25 subjects a day) and their edges.
limit_numbers = st.one_of(
    st.integers(min_value=22, max_value=52),
    st.sampled_from([0, -1, 10**9, 10**9 + 1, 2**53 + 1, 1e12, 24.5, 49.0, 50.0, -0.0, 25.0]),
)

# The stays in force covering a request: none, one, two, or an unreadable list.
STAY = {"jti": "order-1", "number": "1:25-cv-04321", "court": "D.D.C."}
ORDERS_VALUES: list[Any] = [[], [STAY], [STAY, {**STAY, "jti": "order-2"}], [{}], [None], {}, None]


def _set(doc: Any, path: tuple[str | int, ...], value: Any, *, delete: bool = False) -> Any:
    target = doc
    for part in path[:-1]:
        target = target[part]
    last = path[-1]
    if delete:
        if isinstance(target, dict):
            target.pop(last, None)
        elif isinstance(target, list):
            target.pop(int(last))
    else:
        target[last] = value
    return doc


@st.composite
def mutated_inputs(draw: st.DrawFn) -> Any:
    """The valid input with 1-3 fields dropped, retyped or moved to an edge."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        leaf = path[-1]
        action = draw(st.sampled_from(["delete", "wrong", "json", "edge"]))
        if action == "delete":
            _set(doc, path, None, delete=True)
        elif action == "wrong":
            _set(doc, path, copy.deepcopy(draw(st.sampled_from(WRONG_VALUES))))
        elif action == "json":
            _set(doc, path, draw(json_values))
        elif leaf == "now":
            _set(doc, path, draw(timestamps))
        elif leaf in {"exp", "nbf", "iat"}:
            _set(doc, path, draw(window_numbers))
        elif leaf in {"disclosures", "max_disclosures"}:
            _set(doc, path, draw(count_numbers))
        elif leaf in {"open_cases", "subjects_24h"}:
            _set(doc, path, draw(limit_numbers))
        elif leaf == "orders":
            _set(doc, path, copy.deepcopy(draw(st.sampled_from(ORDERS_VALUES))))
        elif leaf == "reason":
            _set(doc, path, draw(st.text(min_size=30, max_size=90)))
        else:
            _set(doc, path, copy.deepcopy(draw(st.sampled_from(WRONG_VALUES))))
    return doc


inputs = st.one_of(
    mutated_inputs(),
    mutated_inputs(),
    mutated_inputs(),
    json_values,
    st.dictionaries(st.sampled_from(sorted(VALID)), json_values, max_size=5),
)


def _decide_both(engines: tuple[EmbeddedPolicyEngine, OpaPolicyEngine], doc: Any) -> None:
    embedded, opa = engines
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
    note(f"input: {text if len(text) < 4000 else text[:4000] + '…'}")
    mine = embedded.decide(doc).as_json()
    theirs = opa.decide(doc).as_json()
    assert mine == theirs, f"engines disagree on input {text!r}: embedded {mine}, OPA {theirs}"
    assert mine["allow"] == (mine["reasons"] == [])


def test_the_valid_input_is_allowed_by_both(
    engines: tuple[EmbeddedPolicyEngine, OpaPolicyEngine],
) -> None:
    embedded, opa = engines
    assert embedded.decide(VALID).allow is True
    assert opa.decide(VALID).allow is True


@pytest.mark.parametrize("case", TABLE, ids=[c["name"].replace(" ", "-") for c in TABLE])
def test_decision_table_under_real_opa(
    engines: tuple[EmbeddedPolicyEngine, OpaPolicyEngine], case: dict[str, Any]
) -> None:
    _, opa = engines
    assert opa.decide(case["input"]).as_json() == case["expected"]


@pytest.mark.parametrize(
    "doc",
    [
        {**VALID, "now": "garbage"},
        {**VALID, "request": {**VALID["request"], "statute": 5}},
        {**VALID, "case_usage": {"disclosures": "none"}},
        {**VALID, "requester_usage": {"open_cases": "0", "subjects_24h": None}},
        {k: v for k, v in VALID.items() if k != "requester_usage"},
        {k: v for k, v in VALID.items() if k != "orders"},
        {**VALID, "orders": {"jti": "order-1"}},
        {**VALID, "now": "2300-01-01T00:00:00Z"},
        {**VALID, "now": "0000-01-01T00:00:00Z"},
        {**VALID, "now": "9999-12-31T23:59:59Z"},
        {k: v for k, v in VALID.items() if k != "requester"},
        {k: v for k, v in VALID.items() if k != "case"},
        {},
    ],
    ids=[
        "now-garbage",
        "statute-number",
        "usage-text",
        "requester-usage-mistyped",
        "no-requester-usage",
        "no-orders",
        "orders-object",
        "year-2300",
        "year-0000",
        "year-9999",
        "no-requester",
        "no-case",
        "empty",
    ],
)
def test_reported_fail_open_inputs_are_denied_alike(
    engines: tuple[EmbeddedPolicyEngine, OpaPolicyEngine], doc: dict[str, Any]
) -> None:
    # Each of these was allowed by OPA (or made the embedded engine fail) before.
    embedded, opa = engines
    mine = embedded.decide(doc)
    assert mine.allow is False
    assert mine.reasons
    assert opa.decide(doc).as_json() == mine.as_json()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(doc=inputs)
def test_engines_decide_alike_on_generated_inputs(
    engines: tuple[EmbeddedPolicyEngine, OpaPolicyEngine], doc: Any
) -> None:
    _decide_both(engines, doc)
