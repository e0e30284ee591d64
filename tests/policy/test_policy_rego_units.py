"""The Rego unit tests (policies/*_test.rego, `opa test` format) run under regorus.

Each ``test_*`` rule is one pytest; it must evaluate to ``true``. Also checks
the data document's designations and the precomputed boilerplate vocabulary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import regorus

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
TEST_FILES = sorted(POLICY_DIR.glob("*_test.rego"))
_RULE = re.compile(r"^(test_[A-Za-z0-9_]+)\s+if\b", re.MULTILINE)
_PACKAGE = re.compile(r"^package\s+(\S+)", re.MULTILINE)


def _rego_tests() -> list[tuple[str, str]]:
    found = []
    for path in TEST_FILES:
        text = path.read_text()
        package = _PACKAGE.search(text)
        assert package is not None
        found += [(package.group(1), name) for name in _RULE.findall(text)]
    return found


REGO_TESTS = _rego_tests()


@pytest.fixture(scope="module")
def test_engine() -> Any:
    engine = regorus.Engine()
    for path in sorted(POLICY_DIR.glob("*.rego")):
        engine.add_policy_from_file(str(path))
    engine.add_data_json((POLICY_DIR / "data.json").read_text())
    return engine


def test_there_are_rego_tests_for_every_code() -> None:
    text = "".join(p.read_text() for p in TEST_FILES)
    policy = (POLICY_DIR / "disclosure.rego").read_text()
    codes = set(re.findall(r'reasons contains "([a-z_]+)"', policy))
    assert len(codes) == 16
    for code in codes:
        assert f'"{code}"' in text, code
    assert len(REGO_TESTS) >= 50


@pytest.mark.parametrize(("package", "rule"), REGO_TESTS, ids=[r for _, r in REGO_TESTS])
def test_rego(test_engine: Any, package: str, rule: str) -> None:
    assert test_engine.eval_rule(f"data.{package}.{rule}") is True


def test_a_failing_rego_test_is_reported_as_not_true(test_engine: Any) -> None:
    # The harness would notice a broken policy: a Rego test that expects the
    # wrong answer evaluates to undefined (None), not True.
    test_engine.add_policy(
        "broken_test.rego",
        "package taxaddr.broken_test\nimport rego.v1\nimport data.taxaddr.disclosure\n"
        "test_wrong if { d := disclosure.decision with input as {}; d.allow == true }\n",
    )
    assert test_engine.eval_rule("data.taxaddr.broken_test.test_wrong") is not True


def _policy_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((POLICY_DIR / "data.json").read_text())
    return dict(data["taxaddr"]["policy_data"])


def test_designated_statutes_and_exclusions() -> None:
    statutes = _policy_data()["criminal_statutes"]
    for citation in (
        "8 U.S.C. 1253(a)(1)",
        "8 U.S.C. 1324",
        "8 U.S.C. 1325",
        "8 U.S.C. 1326",
        "18 U.S.C. 1028",
        "18 U.S.C. 1546",
    ):
        assert citation in statutes
        assert statutes[citation]["title"]
        assert statutes[citation]["citation"]
    for key in statutes:
        assert not key.startswith("26 U.S.C."), key
        assert key not in {"8 U.S.C. 1227", "8 U.S.C. 1182", "8 U.S.C. 1231"}
    comment = _policy_data()["_comment_excluded"]
    for cited in ("1227", "1182", "1231", "Title 26"):
        assert cited in comment


def test_reason_settings() -> None:
    data = _policy_data()
    assert data["min_reason_length"] == 40
    assert {"immigration enforcement", "removal proceedings"} <= set(data["boilerplate_reasons"])


def test_boilerplate_vocabulary_is_in_sync_with_the_phrases() -> None:
    data = _policy_data()
    for phrase in data["boilerplate_reasons"]:
        # phrases are stored normalized, so the vocabulary is their words
        assert phrase == " ".join(re.findall(r"[a-z0-9]+", phrase.lower())), phrase
    words = {w for phrase in data["boilerplate_reasons"] for w in phrase.split()}
    vocabulary = data["boilerplate_vocabulary"]
    assert vocabulary == dict.fromkeys(sorted(words | set(data["filler_words"])), True)
    assert list(vocabulary) == sorted(vocabulary)
