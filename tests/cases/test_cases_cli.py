"""`taxaddr issuer` and `taxaddr case`: round trips and one-line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from taxaddr.cli import run

ISSUE = [
    "case", "issue", "--issuer", "dev-court", "--case-number", "1:26-cr-00123",
    "--court", "D.D.C.", "--proceeding", "criminal", "--statute", "8 U.S.C. 1326",
    "--statute", "18 U.S.C. 1028", "--agency", "ICE-HSI", "--requester", "hsi-agent-0042",
    "--subject", "123-45-6789", "--subject", "900-70-1234", "--tax-period", "2024",
    "--max-disclosures", "5", "--valid-days", "30",
]  # fmt: skip


@pytest.fixture
def cli(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    assert run(["db", "upgrade"]) == 0
    jwk = Path(env["TAXADDR_KEYS_DIR"]) / "issuers" / "dev-court.jwk"
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk)]) == 0
    capsys.readouterr()
    return capsys


def issue(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert run([*ISSUE, *extra]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # the compact JWS and nothing else
    token = out.strip()
    assert token.count(".") == 2
    return token


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_issue_then_inspect_round_trip(cli: pytest.CaptureFixture[str]) -> None:
    token = issue(cli)
    assert run(["case", "inspect", token]) == 0
    out = cli.readouterr().out
    doc = json.loads(out)
    assert doc["valid"] is True
    assert doc["iss"] == "dev-court"
    assert doc["kid"] == "dev-court-2026"
    assert doc["aud"] == "taxaddr"
    assert doc["exp"] - doc["nbf"] == 30 * 86400
    assert doc["case"]["number"] == "1:26-cr-00123"
    assert doc["case"]["statutes"] == ["8 U.S.C. 1326", "18 U.S.C. 1028"]
    assert doc["case"]["subject_count"] == 2
    assert len(doc["case"]["subject_refs"]) == 2
    assert doc["usage"] == {"disclosures": 0}
    assert "6789" not in out
    assert "1234" not in out


def test_inspect_reads_stdin(
    cli: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issue(cli)
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert run(["case", "inspect", "-"]) == 0
    assert json.loads(cli.readouterr().out)["valid"] is True


def test_revoke_then_inspect_refuses(cli: pytest.CaptureFixture[str]) -> None:
    token = issue(cli)
    assert run(["case", "inspect", token]) == 0
    jti = json.loads(cli.readouterr().out)["jti"]
    assert run(["case", "revoke", jti]) == 0
    assert "revoked" in cli.readouterr().out
    assert run(["case", "revoke", jti]) == 0
    assert "already revoked" in cli.readouterr().out
    assert run(["case", "inspect", token]) == 1
    assert one_line_error(cli).startswith("taxaddr: case_revoked:")


def test_inspect_refusal_codes(cli: pytest.CaptureFixture[str]) -> None:
    assert run(["case", "inspect", "not-a-token"]) == 1
    assert one_line_error(cli).startswith("taxaddr: case_reference_malformed:")
    token = issue(cli, "--valid-days", "365")  # longer than the 180-day maximum
    assert run(["case", "inspect", token]) == 1
    assert one_line_error(cli).startswith("taxaddr: case_expired:")


def test_inspect_untrusted_after_issuer_remove(cli: pytest.CaptureFixture[str]) -> None:
    token = issue(cli)
    assert run(["issuer", "remove", "--id", "dev-court"]) == 0
    assert "removed issuer dev-court" in cli.readouterr().out
    assert run(["case", "inspect", token]) == 1
    assert one_line_error(cli).startswith("taxaddr: case_issuer_untrusted:")


def test_issuer_add_is_idempotent_and_listed(
    cli: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    jwk = Path(env["TAXADDR_KEYS_DIR"]) / "issuers" / "dev-court.jwk"
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk)]) == 0
    assert "already trusted" in cli.readouterr().out
    assert run(["issuer", "list"]) == 0
    lines = cli.readouterr().out.splitlines()
    assert lines[1].split("\t") == ["dev-court", "dev-court-2026", "EdDSA", "-", "-", "active"]
    assert run(["issuer", "remove", "--id", "dev-court", "--kid", "dev-court-2026"]) == 0
    cli.readouterr()
    assert run(["issuer", "list"]) == 0
    assert cli.readouterr().out.splitlines()[1].endswith("removed")


def test_issuer_add_of_a_removed_key_says_it_is_trusted_again(
    cli: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    jwk = Path(env["TAXADDR_KEYS_DIR"]) / "issuers" / "dev-court.jwk"
    assert run(["issuer", "remove", "--id", "dev-court", "--kid", "dev-court-2026"]) == 0
    cli.readouterr()
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk)]) == 0
    out = cli.readouterr().out
    assert "already trusted" not in out
    assert out.startswith(
        "trusted again (it had been removed): issuer dev-court key dev-court-2026"
    )
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk)]) == 0
    assert cli.readouterr().out.startswith("already trusted: issuer dev-court")
    assert run(["issuer", "list"]) == 0
    assert cli.readouterr().out.splitlines()[1].endswith("active")
    # removing the whole issuer and adding its key again re-trusts both
    assert run(["issuer", "remove", "--id", "dev-court"]) == 0
    cli.readouterr()
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk)]) == 0
    assert cli.readouterr().out.startswith("trusted again")


def test_issuer_list_empty(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert run(["issuer", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no trusted issuers"


def test_issuer_add_with_window(cli: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.cases.casekit import public_jwk

    path = tmp_path / "rotated.jwk"
    path.write_text(json.dumps(public_jwk(Ed25519PrivateKey.generate(), "court-2027")))
    args = ["issuer", "add", "--id", "dev-court", "--jwk", str(path),
            "--not-before", "2027-01-01", "--not-after", "2028-01-01T00:00:00Z"]  # fmt: skip
    assert run(args) == 0
    assert "added issuer dev-court key court-2027 (EdDSA)" in cli.readouterr().out
    assert run(["issuer", "list"]) == 0
    row = cli.readouterr().out.splitlines()[1].split("\t")
    assert row[:5] == ["dev-court", "court-2027", "EdDSA", "2027-01-01T00:00:00+00:00",
                       "2028-01-01T00:00:00+00:00"]  # fmt: skip


def test_issuer_add_refuses_private_jwk(
    cli: pytest.CaptureFixture[str], tmp_path: Path, env: dict[str, str]
) -> None:
    jwk = json.loads((Path(env["TAXADDR_KEYS_DIR"]) / "issuers" / "dev-court.jwk").read_text())
    path = tmp_path / "private.jwk"
    path.write_text(json.dumps({**jwk, "d": "c2VjcmV0"}))
    assert run(["issuer", "add", "--id", "court-b", "--jwk", str(path)]) == 1
    assert one_line_error(cli).startswith("taxaddr: usage_error: refusing a private")
    assert run(["issuer", "add", "--id", "court-b", "--jwk", str(tmp_path / "missing")]) == 1
    assert "cannot read JWK file" in one_line_error(cli)
    assert run(["issuer", "remove", "--id", "court-b"]) == 1
    assert "no issuer" in one_line_error(cli)


def test_issue_refuses_bad_input_without_echoing_it(cli: pytest.CaptureFixture[str]) -> None:
    args = list(ISSUE)
    args[args.index("123-45-6789")] = "666-45-6789"
    assert run(args) == 1
    err = one_line_error(cli)
    assert err.startswith("taxaddr: usage_error: --subject number 1")
    assert "666" not in err
    for flag, bad in (("--tax-period", "24"), ("--max-disclosures", "0"),
                      ("--valid-days", "0"), ("--case-number", " ")):  # fmt: skip
        args = list(ISSUE)
        args[args.index(flag) + 1] = bad
        assert run(args) == 1
        assert flag in one_line_error(cli)


def test_issue_unknown_local_issuer(cli: pytest.CaptureFixture[str]) -> None:
    args = list(ISSUE)
    args[args.index("dev-court")] = "no-such-court"
    assert run(args) == 1
    assert one_line_error(cli).startswith("taxaddr: keys_unavailable:")


def test_issue_jwk_must_match_private_key(
    cli: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.cases.casekit import public_jwk

    jwk_path = Path(env["TAXADDR_KEYS_DIR"]) / "issuers" / "dev-court.jwk"
    jwk_path.chmod(0o600)
    jwk_path.write_text(json.dumps(public_jwk(Ed25519PrivateKey.generate(), "dev-court-2026")))
    assert run(ISSUE) == 1
    assert "does not match" in one_line_error(cli)
    jwk_path.unlink()
    assert run(ISSUE) == 1
    assert "JWK missing" in one_line_error(cli)
    jwk_path.write_text("{}")
    assert run(ISSUE) == 1
    assert "unusable" in one_line_error(cli)


def test_commands_without_migrated_database(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["issuer", "list"]) == 1
    assert one_line_error(capsys).startswith("taxaddr: database_unavailable:")
    assert run(["case", "revoke", "jti-1"]) == 1
    assert one_line_error(capsys).startswith("taxaddr: database_unavailable:")


def test_revoke_refuses_odd_jti(cli: pytest.CaptureFixture[str]) -> None:
    assert run(["case", "revoke", "has space"]) == 1
    assert one_line_error(cli).startswith("taxaddr: usage_error: JTI")
