"""`taxaddr policy eval` and `taxaddr policy bundle`."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from taxaddr.cli import run
from taxaddr.policy import reset_policy_engines
from taxaddr.policy.sources import load_sources

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
TABLE = json.loads((POLICY_DIR / "decision_table.json").read_text())["cases"]


@pytest.fixture(autouse=True)
def _fresh_engines() -> None:
    reset_policy_engines()


def _eval(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "input.json"
    path.write_text(text)
    capsys.readouterr()
    status = run(["policy", "eval", "--input", str(path)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_eval_allow_and_deny(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for case in (TABLE[0], *[c for c in TABLE if not c["expected"]["allow"]][:3]):
        status, out, err = _eval(tmp_path, json.dumps(case["input"]), capsys)
        assert status == 0, err
        assert json.loads(out) == case["expected"]


@pytest.mark.parametrize("doc", ["{}", "[1, 2]", '"text"', "null", "42", '{"requester": 5}'])
def test_eval_denies_any_unreadable_json(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: str
) -> None:
    status, out, _ = _eval(tmp_path, doc, capsys)
    assert status == 0
    decision = json.loads(out)
    assert decision["allow"] is False
    assert "role_forbidden" in decision["reasons"]
    assert set(decision) == {"allow", "reasons"}


@pytest.mark.parametrize("text", ["not json", "", '{"a": NaN}', "{'a': 1}"])
def test_eval_non_json_is_one_line_error(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    status, out, err = _eval(tmp_path, text, capsys)
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "not JSON" in err


def test_eval_missing_file(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["policy", "eval", "--input", str(tmp_path / "nope.json")]) == 1
    assert "cannot read input file" in capsys.readouterr().err


def test_eval_engine_failure_is_an_error(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taxaddr.config import get_settings

    monkeypatch.setenv("TAXADDR_POLICY_ENGINE", "opa")
    monkeypatch.setenv("TAXADDR_OPA_URL", "http://127.0.0.1:9")  # discard port: refused
    get_settings.cache_clear()
    status, out, err = _eval(tmp_path, json.dumps(TABLE[0]["input"]), capsys)
    assert status == 1
    assert out == ""
    assert err.startswith("taxaddr: policy_unavailable:")


def test_bundle(env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dist" / "bundle.tar.gz"
    assert run(["policy", "bundle", "--out", str(out)]) == 0
    version = load_sources(POLICY_DIR).version
    assert version in capsys.readouterr().out
    with tarfile.open(out, "r:gz") as tar:
        names = sorted(tar.getnames())
        files = {
            name: tar.extractfile(name).read()  # type: ignore[union-attr]
            for name in names
        }
    assert names == [
        ".manifest",
        "taxaddr/disclosure/disclosure.rego",
        "taxaddr/policy_data/data.json",
    ]
    manifest = json.loads(files[".manifest"])
    assert manifest == {
        "revision": version,
        "roots": ["taxaddr/disclosure", "taxaddr/policy_data"],
    }
    policy = (POLICY_DIR / "disclosure.rego").read_bytes()
    assert files["taxaddr/disclosure/disclosure.rego"] == policy
    data = json.loads((POLICY_DIR / "data.json").read_text())["taxaddr"]["policy_data"]
    assert json.loads(files["taxaddr/policy_data/data.json"]) == data
    # reproducible: the same policy gives the same bytes
    again = tmp_path / "again.tar.gz"
    assert run(["policy", "bundle", "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_bundle_unwritable(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run(["policy", "bundle", "--out", str(blocker / "b.tar.gz")]) == 1
    assert "cannot write bundle" in capsys.readouterr().err


def test_bundle_of_other_layouts(tmp_path: Path) -> None:
    from taxaddr.policy.bundle import write_bundle

    root = tmp_path / "pol"
    root.mkdir()
    (root / "a.rego").write_text("package alpha.beta\nimport rego.v1\nx := 1\n")
    (root / "data.json").write_text('{"flat": [1, 2], "alpha": {"gamma": {"k": 1}}}')
    info = write_bundle(load_sources(root), tmp_path / "b.tar.gz")
    assert info.roots == ("alpha/beta", "alpha/gamma", "flat")
    assert "flat/data.json" in info.files
    with tarfile.open(tmp_path / "b.tar.gz", "r:gz") as tar:
        member = tar.extractfile("alpha/beta/a.rego")
        assert member is not None
        assert io.BytesIO(member.read()).read().startswith(b"package alpha.beta")
