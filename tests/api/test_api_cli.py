"""`taxaddr requester add/revoke` and `taxaddr request` through the real CLI entry point."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from taxaddr.cli import run
from taxaddr.crypto import pki
from tests.api.apikit import JANE, STATUTE, Identity, RunningServer, World


@pytest.fixture
def cli_db(env: dict[str, str]) -> dict[str, str]:
    assert run(["db", "upgrade"]) == 0
    return env


def test_requester_add_issue_cert_writes_key_cert_and_server_ca(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "certs"
    args = ["requester", "add", "--id", "hsi-1", "--agency", "ICE-HSI", "--role", "requester"]
    assert run([*args, "--issue-cert", str(out)]) == 0
    first = capsys.readouterr().out
    assert first.startswith("registered: hsi-1")
    cert = x509.load_pem_x509_certificate((out / "hsi-1.crt").read_bytes())
    assert pki.fingerprint(cert) in first
    assert stat.S_IMODE((out / "hsi-1.key").stat().st_mode) == 0o600
    keys = Path(cli_db["TAXADDR_KEYS_DIR"])
    assert (out / "ca.crt").read_bytes() == (keys / "server-ca.crt").read_bytes()
    # idempotent re-run; a different role for the same id is refused with one line
    assert run([*args, "--issue-cert", str(out)]) == 0
    assert capsys.readouterr().out.startswith("already registered: hsi-1")
    other = ["requester", "add", "--id", "hsi-1", "--agency", "ICE-HSI", "--role", "oversight"]
    assert run([*other, "--issue-cert", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "already registered" in err


def test_requester_add_with_existing_cert_and_revoke(
    cli_db: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = pki.make_ca("some CA")
    pem = tmp_path / "mon.crt"
    pem.write_bytes(pki.issue_cert(ca, "mon", server=False).cert_pem())
    add = ["requester", "add", "--id", "mon", "--agency", "TIGTA", "--role", "monitor"]
    assert run([*add, "--cert", str(pem)]) == 0
    assert run([*add, "--cert", str(pem)]) == 0  # same registration again: no-op
    assert run(["requester", "revoke", "mon"]) == 0
    assert "revoked: mon" in capsys.readouterr().out
    assert run(["requester", "revoke", "mon"]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert run(["requester", "revoke", "nobody"]) == 1
    assert run([*add, "--cert", str(tmp_path / "missing.crt")]) == 1


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--id", "bad id!", "--agency", "A", "--role", "requester"], "--id"),
        (["--id", "ok", "--agency", "A", "--role", "superuser"], "--role"),
        (["--id", "ok", "--agency", "A", "--role", "requester"], "--cert"),
        # every leaf of an identity carries its id and agency: no TIN shapes
        (["--id", "agent-912.77.3456", "--agency", "A", "--role", "requester"], "nine digits"),
        (["--id", "ok", "--agency", "ICE 9-1-2-7-7-3-4-5-6", "--role", "requester"], "nine"),
    ],
)
def test_requester_add_refuses_bad_input(
    cli_db: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    assert run(["requester", "add", *args]) == 1
    assert problem in capsys.readouterr().err


def _request_args(server: RunningServer, ident: Identity, case: str, address: str) -> list[str]:
    return [
        "request",
        "--cert",
        str(ident.cert),
        "--key",
        str(ident.key),
        "--ca",
        str(ident.ca),
        "--url",
        server.base_url,
        "--case-ref",
        case,
        "--tin",
        JANE["tin"],
        "--name",
        JANE["name"],
        "--address",
        address,
        "--tax-period",
        "2024",
        "--statute",
        STATUTE,
        "--reason",
        "Subject is charged in this case; the warrant must be served at the current address.",
    ]


def test_request_command_prints_the_answer(
    server: RunningServer, world: World, agent: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    case = world.case()
    args = _request_args(server, agent, case, "1401 Quill Street NW, Washington, DC 20001")
    assert run(args) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["address"]["zip"] == "20001"
    # an incomplete address is refused: the envelope is printed and the exit status is 1
    assert run(_request_args(server, agent, case, "1401 Quill Street NW, Washington")) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["error"]["code"] == "address_incomplete"


def test_request_command_unreachable_server(
    world: World, agent: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    class _Dead:
        base_url = "https://127.0.0.1:9"

    args = _request_args(_Dead(), agent, "x.y.z", "a, b, DC 20001")  # type: ignore[arg-type]
    assert run(args) == 1
    assert "service_unreachable" in capsys.readouterr().err


def test_request_command_sends_a_canonical_uuid_request_id(
    server: RunningServer, world: World, agent: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    case = world.case()
    args = _request_args(server, agent, case, "1401 Quill Street NW, Washington, DC 20001")
    given = "0B6F3A4E8C1D4F2A9E7B5D3C2A1F0E9D"  # a UUID, not in canonical form
    assert run([*args, "--request-id", given]) == 0
    answer = json.loads(capsys.readouterr().out)
    with server.client(world.identities["overseer"]) as client:
        entries = client.get(
            "/v1/audit/entries",
            params={
                "start": answer["audit"]["leaf_index"],
                "end": answer["audit"]["leaf_index"] + 1,
            },
        ).json()["entries"]
    assert entries[0]["leaf"]["request_id"] == "0b6f3a4e-8c1d-4f2a-9e7b-5d3c2a1f0e9d"


@pytest.mark.parametrize("request_id", ["912-77-3456", "req-0001", "ZQXLEAKNAME"])
def test_request_command_refuses_a_request_id_that_is_not_a_uuid(
    world: World, agent: Identity, capsys: pytest.CaptureFixture[str], request_id: str
) -> None:
    class _Never:
        base_url = "https://127.0.0.1:9"  # never contacted: refused before sending

    args = _request_args(_Never(), agent, "x.y.z", "a, b, DC 20001")  # type: ignore[arg-type]
    assert run([*args, "--request-id", request_id]) == 1
    err = capsys.readouterr().err
    assert "usage_error" in err
    assert "--request-id must be a UUID" in err
    assert request_id not in err


def test_parse_address() -> None:
    from taxaddr.api.client import parse_address

    assert parse_address("1 Main St, Apt 2, Springfield, IL 62701") == {
        "street": "1 Main St, Apt 2",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
    }
    assert parse_address("") == {}
    assert parse_address("1 Main St") == {"street": "1 Main St"}
