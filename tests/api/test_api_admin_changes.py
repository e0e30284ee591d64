"""Trust changes over mTLS with dual control (CONTRACT "Trust changes are leaves too"):
the dangerous changes wait for a second, different admin; every step is a leaf."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.cases import jws
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.crypto import pki
from taxaddr.db import write_transaction
from taxaddr.db.schema import PendingChange
from tests.api.apikit import (
    Identity,
    RunningServer,
    World,
    build_world,
    cleanup,
    engine_for,
    run_server,
    tree_size,
)


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    world = build_world(tmp_path_factory.mktemp("dual-world"), dual_control=True)
    for name in ("admin-a", "admin-b"):
        world.identity(name, role="admin", agency="IRS-DO")
    world.identity("agent-x")
    with run_server(world) as server:
        yield server
    cleanup()


def _jwk(kid: str) -> dict[str, str]:
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return {"kty": "OKP", "crv": "Ed25519", "x": jws.b64url_encode(raw), "kid": kid}


def _post(server: RunningServer, who: Identity, path: str, payload: Any = None) -> Any:
    with server.client(who) as client:
        return client.post(path, json=payload) if payload is not None else client.post(path)


def _admin_leaves(world: World, since: int) -> list[dict[str, Any]]:
    with Session(engine_for(world.settings)) as session:
        return [c.as_dict() for c in admin.trust_changes(session) if c.leaf_index >= since]


def test_issuer_add_waits_for_a_second_admin(dual: RunningServer) -> None:
    world = dual.world
    a, b = world.identities["admin-a"], world.identities["admin-b"]
    before = tree_size(world)
    jwk = _jwk("court-x-1")
    proposed = _post(
        dual, a, "/v1/admin/changes", {"action": "issuer_add", "issuer": "court-x", "jwk": jwk}
    )
    assert proposed.status_code == 202, proposed.text
    change = proposed.json()
    assert change["status"] == "pending"
    assert change["audit"]["leaf_index"] == before
    # not trusted yet: the registry is unchanged until the approval
    assert [c["action"] for c in _admin_leaves(world, before)] == ["change_proposed"]
    with dual.client(a) as client:
        listed = client.get("/v1/admin/changes").json()["changes"]
    assert [(c["change_id"], c["status"]) for c in listed] == [(change["change_id"], "pending")]

    # the proposer cannot approve
    own = _post(dual, a, f"/v1/admin/changes/{change['change_id']}/approve")
    assert own.status_code == 403
    assert own.json()["error"]["code"] == "approval_forbidden"
    assert tree_size(world) == before + 1

    approved = _post(dual, b, f"/v1/admin/changes/{change['change_id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "applied"
    leaves = _admin_leaves(world, before)
    assert [c["action"] for c in leaves] == ["change_proposed", "issuer_added", "change_approved"]
    assert leaves[1]["target"] == (f"iss=court-x kid=court-x-1 jkt={admin.jwk_thumbprint(jwk)}")
    assert [c["requester_id"] for c in leaves] == ["admin-a", "admin-b", "admin-b"]
    assert approved.json()["audit"]["leaf_index"] == leaves[2]["leaf_index"]

    again = _post(dual, b, f"/v1/admin/changes/{change['change_id']}/approve")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "change_not_pending"


def test_an_unknown_change_is_404_and_a_requester_cannot_propose(dual: RunningServer) -> None:
    world = dual.world
    before = tree_size(world)
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = _post(dual, world.identities["admin-b"], f"/v1/admin/changes/{unknown}/approve")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "change_unknown"
    forbidden = _post(
        dual,
        world.identities["agent-x"],
        "/v1/admin/changes",
        {"action": "issuer_key_remove", "issuer": "court-x", "kid": "court-x-1"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "role_forbidden"
    assert tree_size(world) == before


@pytest.mark.parametrize(
    "body",
    [
        {"action": "issuer_swap"},
        {"action": "issuer_add", "issuer": "court-y"},
        {"action": "issuer_add", "issuer": "court-y", "jwk": {"kty": "oct", "k": "AAAA"}},
        {"action": "issuer_add", "issuer": "court y", "jwk": _jwk("k")},
        {"action": "issuer_key_remove", "issuer": "court-y", "kid": "k", "extra": 1},
        {"action": "requester_add", "id": "x", "agency": "A", "role": "root", "certificate": "-"},
        {"action": "requester_add", "id": "x", "agency": "A", "role": "admin", "certificate": "no"},
        ["not", "an", "object"],
    ],
)
def test_malformed_changes_are_422_without_a_leaf(dual: RunningServer, body: Any) -> None:
    world = dual.world
    before = tree_size(world)
    answer = _post(dual, world.identities["admin-a"], "/v1/admin/changes", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "request_invalid"
    assert tree_size(world) == before


def test_a_privileged_requester_needs_approval_a_plain_one_does_not(dual: RunningServer) -> None:
    world = dual.world
    a, b = world.identities["admin-a"], world.identities["admin-b"]
    ca = world.keystore.files.client_ca()
    officer = pki.issue_cert(ca, "officer-1", server=False).cert_pem().decode()
    agent = pki.issue_cert(ca, "agent-9", server=False).cert_pem().decode()
    before = tree_size(world)
    plain = _post(dual, a, "/v1/admin/changes", {"action": "requester_add", "id": "agent-9",
                  "agency": "FBI", "role": "requester", "certificate": agent})  # fmt: skip
    assert plain.status_code == 200, plain.text
    assert plain.json()["status"] == "applied"
    assert [c["action"] for c in _admin_leaves(world, before)] == ["requester_added"]

    pending = _post(dual, a, "/v1/admin/changes", {"action": "requester_add", "id": "officer-1",
                    "agency": "IRS-DO", "role": "admin", "certificate": officer})  # fmt: skip
    assert pending.status_code == 202
    change_id = pending.json()["change_id"]
    refused = _post(dual, b, f"/v1/admin/changes/{change_id}/refuse")
    assert refused.status_code == 200
    assert refused.json()["status"] == "refused"
    late = _post(dual, b, f"/v1/admin/changes/{change_id}/approve")
    assert late.status_code == 409
    actions = [c["action"] for c in _admin_leaves(world, before)]
    assert actions == ["requester_added", "change_proposed", "change_refused"]


def test_an_expired_change_cannot_be_approved_and_its_expiry_is_a_leaf(
    dual: RunningServer,
) -> None:
    world = dual.world
    a, b = world.identities["admin-a"], world.identities["admin-b"]
    proposed = _post(dual, a, "/v1/admin/changes",
                     {"action": "issuer_add", "issuer": "court-z", "jwk": _jwk("z1")})  # fmt: skip
    change_id = proposed.json()["change_id"]
    with write_transaction(engine_for(world.settings)) as session:
        session.execute(
            update(PendingChange)
            .where(PendingChange.id == change_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    before = tree_size(world)
    answer = _post(dual, b, f"/v1/admin/changes/{change_id}/approve")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "change_expired"
    leaves = _admin_leaves(world, before)
    assert [(c["action"], c["requester_id"]) for c in leaves] == [("change_expired", "taxaddr")]
    twice = _post(dual, b, f"/v1/admin/changes/{change_id}/approve")
    assert twice.json()["error"]["code"] == "change_expired"
    assert tree_size(world) == before + 1


def test_two_approvals_at_once_apply_the_change_once(dual: RunningServer) -> None:
    world = dual.world
    a = world.identities["admin-a"]
    approvers = [world.identity(f"admin-c{i}", role="admin", agency="IRS-DO") for i in range(4)]
    proposed = _post(dual, a, "/v1/admin/changes",
                     {"action": "issuer_add", "issuer": "court-w", "jwk": _jwk("w1")})  # fmt: skip
    change_id = proposed.json()["change_id"]
    before = tree_size(world)
    with concurrent.futures.ThreadPoolExecutor(len(approvers)) as pool:
        answers = list(
            pool.map(
                lambda who: _post(dual, who, f"/v1/admin/changes/{change_id}/approve"), approvers
            )
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 409, 409, 409], [r.text for r in answers]
    actions = [c["action"] for c in _admin_leaves(world, before)]
    assert actions == ["issuer_added", "change_approved"]


def test_without_dual_control_a_change_applies_at_once(tmp_path: Path) -> None:
    world = build_world(tmp_path / "single")
    try:
        boss = world.identity("admin-solo", role="admin", agency="IRS-DO")
        with run_server(world) as server:
            before = tree_size(world)
            body = {"action": "issuer_add", "issuer": "court-s", "jwk": _jwk("s1")}
            answer = _post(server, boss, "/v1/admin/changes", body)
            assert answer.status_code == 200
            assert answer.json()["status"] == "applied"
            assert answer.json()["audit"]["leaf_index"] == before
            body = {"action": "issuer_add", "issuer": "court-s", "jwk": _jwk("s1")}
            same = _post(server, boss, "/v1/admin/changes", body)
            assert same.status_code == 422  # kid s1 already names another key
    finally:
        cleanup()


def test_the_cli_refuses_dangerous_changes_under_dual_control(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    keys_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["db", "upgrade"]) == 0
    jwk_path = keys_dir / "issuers" / "dev-court.jwk"
    assert run(["issuer", "add", "--id", "dev-court", "--jwk", str(jwk_path)]) == 0
    monkeypatch.setenv("TAXADDR_DUAL_CONTROL", "true")
    get_settings.cache_clear()
    capsys.readouterr()
    assert run(["issuer", "add", "--id", "court-2", "--jwk", str(jwk_path)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "POST /v1/admin/changes" in err
    assert run(["issuer", "remove", "--id", "dev-court"]) != 0  # its last active key
    assert "POST /v1/admin/changes" in capsys.readouterr().err
    out = tmp_path / "certs"
    assert run(["requester", "add", "--id", "boss", "--agency", "IRS", "--role", "admin",
                "--issue-cert", str(out)]) != 0  # fmt: skip
    assert "POST /v1/admin/changes" in capsys.readouterr().err
    # a plain requester, a revocation: not dangerous, the CLI still makes them
    assert run(["requester", "add", "--id", "agent-2", "--agency", "FBI", "--role", "requester",
                "--issue-cert", str(out)]) == 0  # fmt: skip
    assert run(["requester", "revoke", "agent-2"]) == 0
    assert json.loads(jwk_path.read_text())["kid"]


def test_prod_requires_dual_control(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAXADDR_ENV", "prod")
    get_settings.cache_clear()
    assert run(["audit", "admin-log"]) != 0
    assert "TAXADDR_DUAL_CONTROL" in capsys.readouterr().err
