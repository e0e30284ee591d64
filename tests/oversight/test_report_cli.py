"""`taxaddr report compliance` and `taxaddr report verify` end to end (CLI, files on disk)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import make_engine
from taxaddr.migrate import upgrade
from tests.oversight.oversight_seed import CASE_A, seed


@pytest.fixture
def cli_db(env: dict[str, str], keys_dir: Path) -> dict[str, str]:
    url = env["TAXADDR_DATABASE_URL"]
    upgrade(url)
    engine = make_engine(url)
    seed(engine, FileKeyStore(keys_dir).pseudonym_key())
    engine.dispose()
    return env


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_compliance_then_verify(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    out = tmp_path / f"report.{fmt}"
    args = ["report", "compliance", "--from", "2026-11-02", "--to", "2026-11-04"]
    assert run([*args, "--format", fmt, "--out", str(out)]) == 0
    assert "8 requests, 4 disclosed" in capsys.readouterr().out
    sig = (tmp_path / f"report.{fmt}.sig").read_text()
    assert sig.endswith("\n")
    assert sig.count("\n") == 1
    assert len(base64.b64decode(sig.strip(), validate=True)) == 64
    assert run(["report", "verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("ok: signature valid; 8 requests (4 disclosed)")


def test_case_report(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "case.json"
    args = ["report", "compliance", "--from", "2026-11-01", "--to", "2026-11-30"]
    assert run([*args, "--case", CASE_A[0], "--out", str(out)]) == 0
    assert "6 requests, 4 disclosed" in capsys.readouterr().out
    assert run(["report", "verify", str(out)]) == 0


def test_verify_names_a_tampered_file(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    args = ["report", "compliance", "--from", "2026-11-02", "--to", "2026-11-04"]
    assert run([*args, "--out", str(out)]) == 0
    out.write_bytes(out.read_bytes().replace(b'"disclosed":4', b'"disclosed":5'))
    capsys.readouterr()
    assert run(["report", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("taxaddr: integrity_error: report does not verify: signature:")


def test_cli_usage_errors(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "r.json")
    assert (
        run(["report", "compliance", "--from", "2026-11-5", "--to", "2026-11-04", "--out", out])
        == 1
    )
    assert "'--from' is not a date" in capsys.readouterr().err
    assert (
        run(["report", "compliance", "--from", "2026-11-05", "--to", "2026-11-04", "--out", out])
        == 1
    )
    assert "after" in capsys.readouterr().err
    assert (
        run(
            [
                "report",
                "compliance",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-04",
                "--case",
                "nope",
                "--out",
                out,
            ]
        )
        == 1
    )
    assert "case_unknown" in capsys.readouterr().err
    assert run(["report", "verify", str(tmp_path / "missing.json")]) == 1
    assert "cannot read report file" in capsys.readouterr().err
    (tmp_path / "nosig.json").write_text("{}")
    assert run(["report", "verify", str(tmp_path / "nosig.json")]) == 1
    assert "cannot read signature file" in capsys.readouterr().err
    assert get_settings().env == "test"
