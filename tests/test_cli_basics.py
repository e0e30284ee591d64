"""CLI plumbing: key initialisation, migrations, and the one-line error handler."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from taxaddr.cli import run
from taxaddr.config import get_settings


def test_keys_init_creates_private_files_and_never_overwrites(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh = tmp_path / "fresh-keys"
    monkeypatch.setenv("TAXADDR_KEYS_DIR", str(fresh))
    get_settings.cache_clear()
    assert run(["keys", "init"]) == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    for name in (
        "kek/v1.key",
        "blind-index.key",
        "pseudonym.key",
        "audit-signing.key",
        "issuers/dev-court.key",
        "client-ca.key",
        "server.key",
    ):
        assert stat.S_IMODE((fresh / name).stat().st_mode) == 0o600, name
    assert (fresh / "client-ca.crt").exists()
    before = (fresh / "kek/v1.key").read_bytes()
    capsys.readouterr()
    assert run(["keys", "init"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert (fresh / "kek/v1.key").read_bytes() == before


def test_db_upgrade_creates_schema(env: dict[str, str], tmp_path: Path) -> None:
    assert run(["db", "upgrade"]) == 0
    assert (tmp_path / "cli.db").exists()


def test_invalid_setting_is_one_line_on_stderr(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAXADDR_POLICY_ENGINE", "telepathy")
    get_settings.cache_clear()
    assert run(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("taxaddr: config_invalid:")
    assert err.count("\n") == 1


def test_prod_refuses_sqlite_and_dev_keys(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAXADDR_ENV", "prod")
    monkeypatch.setenv("TAXADDR_KEYS_DIR", "keys/dev")
    get_settings.cache_clear()
    assert run(["keys", "init"]) == 1
    err = capsys.readouterr().err
    assert "SQLite" in err
    assert "dev keys" in err


def test_unknown_option_is_one_line_without_traceback(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from taxaddr.cli import main; main()", "keys", "init", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "--bogus" in proc.stderr
