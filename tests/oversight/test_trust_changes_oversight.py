"""Trust changes for oversight: the issuer-swap scenario in `audit admin-log`, the
compliance report (and its verification) and the dashboard; the policy version
history with statutes added to the criminal allow-list flagged."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.audit.log import append_leaf
from taxaddr.cases import issuers, jws
from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.reports import document
from taxaddr.reports.compliance import build_report, signed_report, verify_report
from tests.api.apikit import (
    JANE,
    SEEDED_SECRETS,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    engine_for,
    forge_case,
    run_server,
)

NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC)
PERIOD = {"from_day": date(2026, 11, 2), "to_day": date(2026, 11, 4)}


def _at(moment: datetime, leaf: Any) -> Any:
    return dataclasses.replace(leaf, time=moment)


def _seed_trust_changes(engine: Engine) -> None:
    operator = admin.cli_actor()
    with write_transaction(engine) as session:
        for moment, action, target in (
            (datetime(2026, 11, 3, 9, tzinfo=UTC), admin.ISSUER_ADDED, "iss=rogue kid=r1"),
            (datetime(2026, 11, 3, 10, tzinfo=UTC), admin.ISSUER_KEY_REMOVED, "iss=rogue kid=r1"),
            (datetime(2026, 11, 9, 10, tzinfo=UTC), admin.CASE_REVOKED, "jti-late"),  # after
        ):
            leaf = admin.admin_leaf(operator, action, target, policy_version="none")
            append_leaf(session, _at(moment, leaf))


def _verify(engine: Engine, keystore: FileKeyStore, settings: Settings, data: bytes, sig: str):
    with Session(engine) as session:
        return verify_report(session, keystore, settings, data, sig)


def test_report_lists_the_periods_trust_changes_and_verifies_them(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    _seed_trust_changes(seeded)
    with write_transaction(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, **PERIOD)
    changes = report["trust_changes"]
    assert [(c["action"], c["target"]) for c in changes] == [
        ("issuer_added", "iss=rogue kid=r1"),
        ("issuer_key_removed", "iss=rogue kid=r1"),
    ]
    assert set(changes[0]) == set(document.TRUST_KEYS)
    assert changes[0]["requester_id"].startswith("cli:")
    # trust changes are not requests: the request counts are those of the seeded events
    assert report["totals"]["requests"] == 8
    for fmt in ("json", "csv", "pdf"):
        with write_transaction(seeded) as session:
            signed = signed_report(session, keystore, settings, fmt=fmt, now=NOW, **PERIOD)
        assert document.parse(signed.data)["trust_changes"] == changes
        assert _verify(seeded, keystore, settings, signed.data, signed.signature).ok


def _resign(report: dict[str, Any], keystore: FileKeyStore) -> tuple[bytes, str]:
    from taxaddr.reports import signing

    data = document.to_json(report)
    return data, signing.sign(data, keystore.report_signing_key())


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda r: r["trust_changes"].pop(0), "issuer_added in the log, missing from the report"),
        (lambda r: r["trust_changes"][1].update(target="iss=court kid=k"), "differs from"),
        (
            lambda r: r["trust_changes"].append({**r["trust_changes"][0], "leaf_index": 3}),
            "trust_changes[3]: not a trust change",
        ),
    ],
)
def test_a_report_hiding_or_editing_a_trust_change_fails_verification(
    seeded: Engine, keystore: FileKeyStore, settings: Settings, edit: Any, problem: str
) -> None:
    _seed_trust_changes(seeded)
    with write_transaction(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, **PERIOD)
    edit(report)
    data, sig = _resign(report, keystore)
    check = _verify(seeded, keystore, settings, data, sig)
    assert not check.ok
    assert any(problem in p for p in check.problems), check.problems


def test_a_report_from_before_trust_changes_still_verifies(
    seeded: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    _seed_trust_changes(seeded)
    with write_transaction(seeded) as session:
        report = build_report(session, keystore, settings, now=NOW, **PERIOD)
    del report["trust_changes"]
    data, sig = _resign(report, keystore)
    assert _verify(seeded, keystore, settings, data, sig).ok


# -- the issuer swap, end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def swap(tmp_path_factory: pytest.TempPathFactory) -> Any:
    world = build_world(tmp_path_factory.mktemp("swap-world"))
    world.identity("agent-1")
    world.identity("overseer", role="oversight", agency="TIGTA")
    with run_server(world) as server:
        yield world, server
    cleanup()


def test_the_issuer_swap_is_visible_in_admin_log_report_and_dashboard(
    swap: tuple[World, RunningServer], tmp_path: Path
) -> None:
    world, server = swap
    engine = engine_for(world.settings)
    insider = admin.Actor("cli:mallory@ops-7", "cli", "operator")
    rogue = Ed25519PrivateKey.generate()
    raw = rogue.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": jws.b64url_encode(raw), "kid": "quiet-1"}
    # 1. an insider trusts a key of their own, 2. signs a case with it, 3. discloses,
    # 4. removes the key again.
    with write_transaction(engine) as session:
        issuers.add_key(
            session,
            "quiet-court",
            issuers.parse_public_jwk(json.dumps(jwk).encode()),
            actor=insider,
        )
    token = forge_case(world, claims={"iss": "quiet-court"}, header={"kid": "quiet-1"}, key=rogue)
    agent = world.identities["agent-1"]
    with server.client(agent) as client:
        answer = client.post("/v1/disclosures", json=body(token, JANE))
    assert answer.status_code == 200, answer.text
    with write_transaction(engine) as session:
        issuers.remove(session, "quiet-court", actor=insider)

    with Session(engine) as session:
        changes = [
            c for c in admin.trust_changes(session) if c.requester_id == insider.requester_id
        ]
    thumbprint = admin.jwk_thumbprint(jwk)
    assert [(c.action, c.target) for c in changes] == [
        ("issuer_added", f"iss=quiet-court kid=quiet-1 jkt={thumbprint}"),
        ("issuer_key_removed", f"iss=quiet-court kid=quiet-1 jkt={thumbprint}"),
    ]
    disclosure_leaf = answer.json()["audit"]["leaf_index"]
    assert changes[0].leaf_index < disclosure_leaf < changes[1].leaf_index

    overseer = world.identities["overseer"]
    today = datetime.now(UTC).date().isoformat()
    with httpx.Client(base_url=server.base_url, verify=overseer.ssl_context()) as client:
        report = client.get(
            "/v1/reports/compliance", params={"from": today, "to": today, "format": "json"}
        ).json()
        html = client.get("/oversight").text
    listed = [(c["action"], c["requester_id"]) for c in report["trust_changes"]]
    assert ("issuer_added", insider.requester_id) in listed
    assert ("issuer_key_removed", insider.requester_id) in listed
    assert f"jkt={thumbprint}" in html
    assert "cli:mallory@ops-7" in html
    for secret in SEEDED_SECRETS:
        assert secret not in html
        assert secret not in json.dumps(report)


def test_policy_history_flags_a_statute_added_to_the_allow_list(engine: Engine) -> None:
    allow_lists = {
        "sha256:v1": ["18 U.S.C. 1028", "8 U.S.C. 1326"],
        "sha256:v2": ["18 U.S.C. 1028", "8 U.S.C. 1227", "8 U.S.C. 1326"],  # a civil one
        "sha256:v3": ["18 U.S.C. 1028", "8 U.S.C. 1227"],
    }
    for version in ("sha256:v1", "sha256:v2", "sha256:v3", "sha256:v4"):
        with write_transaction(engine) as session:
            admin.note_policy_version(session, version, allow_lists.get)
    with Session(engine) as session:
        history = admin.policy_history(session)
    assert [h.version for h in history] == ["sha256:v1", "sha256:v2", "sha256:v3", "sha256:v4"]
    assert [h.flagged for h in history] == [False, True, False, False]
    assert history[1].added_statutes == ("8 U.S.C. 1227",)
    assert history[2].removed_statutes == ("8 U.S.C. 1326",)
    assert history[3].added_statutes is None  # v4's data is unknown to the service
