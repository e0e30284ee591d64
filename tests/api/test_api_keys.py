"""Public keys for third parties: ``GET /v1/keys``, ``taxaddr keys public`` and the README.

The README's "Third-party verification" blocks are run here exactly as written, on
a real receipt, checkpoint and signed report from the server, with nothing but the
published keys, Python's ``cryptography`` and ``openssl``; and each is shown to
refuse a forgery.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taxaddr.api.runtime import engine_for
from taxaddr.audit.admin import cli_actor
from taxaddr.db import write_transaction
from taxaddr.disclosure.identity import revoke_requester
from tests.api.apikit import REPO, Identity, RunningServer, World, body

KEYS = {"audit_vkey", "receipt_jwk", "report_public_key_pem"}


def _readme_block(kind: str) -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- third-party-verification:{kind} -->\n```\w+\n(.*?)```", text, re.S)
    assert found is not None, f"README has no third-party-verification:{kind} block"
    return found.group(1)


def _cli_env(world: World) -> dict[str, str]:
    return {
        **os.environ,
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(world.keys_dir),
        "TAXADDR_DATABASE_URL": world.settings.database_url,
    }


def test_every_registered_role_gets_the_same_public_keys_as_the_cli(
    server: RunningServer, world: World
) -> None:
    answers = []
    for ident in world.identities.values():
        with server.client(ident) as client:
            answer = client.get("/v1/keys")
        assert answer.status_code == 200, (ident.id, answer.text)
        answers.append(answer.json())
    assert all(a == answers[0] for a in answers)
    assert set(answers[0]) == KEYS
    assert "PRIVATE" not in json.dumps(answers[0])
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "taxaddr"), "keys", "public"],
        env=_cli_env(world),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(cli.stdout) == answers[0]
    vkey = subprocess.run(
        [str(Path(sys.executable).parent / "taxaddr"), "audit", "vkey"],
        env=_cli_env(world),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert vkey.stdout.strip() == answers[0]["audit_vkey"]


def test_keys_refuse_unknown_and_revoked_certificates(server: RunningServer, world: World) -> None:
    stranger = world.identity("keys-stranger", register=False)
    revoked = world.identity("keys-revoked")
    with write_transaction(engine_for(world.settings)) as session:
        assert revoke_requester(session, revoked.id, actor=cli_actor())
    for ident, code in ((stranger, "requester_unknown"), (revoked, "requester_revoked")):
        with server.client(ident) as client:
            answer = client.get("/v1/keys")
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == code
        assert "audit_vkey" not in answer.text


@pytest.fixture
def signed_things(
    server: RunningServer, world: World, agent: Identity, overseer: Identity, tmp_path: Path
) -> Path:
    """keys.json, receipt.jws, checkpoint.txt, report.json(.sig) as a third party has them."""
    with server.client(agent) as client:
        keys = client.get("/v1/keys")
        disclosed = client.post("/v1/disclosures", json=body(world.case()))
    assert disclosed.status_code == 200, disclosed.text
    with server.client(overseer) as client:
        checkpoint = client.get("/v1/audit/checkpoint")
        today = dt.datetime.now(dt.UTC).date()
        period = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": today.isoformat()}
        report = client.get("/v1/reports/compliance", params=period)
    assert checkpoint.status_code == report.status_code == 200
    (tmp_path / "keys.json").write_bytes(keys.content)
    (tmp_path / "receipt.jws").write_text(disclosed.json()["receipt"] + "\n")
    (tmp_path / "checkpoint.txt").write_text(checkpoint.text)
    (tmp_path / "report.json").write_bytes(report.content)
    (tmp_path / "report.json.sig").write_text(report.headers["x-signature"] + "\n")
    return tmp_path


def _run_python(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _readme_block("python")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run_shell(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _readme_block("shell")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_readme_verification_accepts_what_the_service_signed(signed_things: Path) -> None:
    python = _run_python(signed_things)
    assert python.returncode == 0, python.stderr
    shell = _run_shell(signed_things)
    assert shell.returncode == 0, shell.stderr + shell.stdout
    assert "Signature Verified Successfully" in shell.stdout


def test_readme_verification_refuses_a_forged_receipt(signed_things: Path) -> None:
    header, claims, signature = (signed_things / "receipt.jws").read_text().strip().split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["leaf_index"] += 1
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    (signed_things / "receipt.jws").write_text(f"{header}.{forged}.{signature}\n")
    result = _run_python(signed_things)
    assert result.returncode != 0
    assert "InvalidSignature" in result.stderr


def test_readme_verification_refuses_a_forged_checkpoint(signed_things: Path) -> None:
    lines = (signed_things / "checkpoint.txt").read_text().split("\n")
    lines[1] = str(int(lines[1]) + 1)  # a bigger tree than the log signed
    (signed_things / "checkpoint.txt").write_text("\n".join(lines))
    result = _run_python(signed_things)
    assert result.returncode != 0
    assert "InvalidSignature" in result.stderr


def test_readme_verification_refuses_a_checkpoint_signed_by_another_key(
    signed_things: Path,
) -> None:
    keys = json.loads((signed_things / "keys.json").read_text())
    name, _hash, key = keys["audit_vkey"].split("+", 2)
    keys["audit_vkey"] = f"{name}+00000000+{key}"  # a key hash that does not match the key
    (signed_things / "keys.json").write_text(json.dumps(keys))
    assert _run_python(signed_things).returncode != 0


def test_readme_verification_refuses_a_changed_report(signed_things: Path) -> None:
    report = signed_things / "report.json"
    report.write_bytes(report.read_bytes().replace(b'"totals"', b'"totalz"', 1))
    assert _run_python(signed_things).returncode == 0
    shell = _run_shell(signed_things)
    assert shell.returncode != 0
    assert "Signature Verified Successfully" not in shell.stdout
