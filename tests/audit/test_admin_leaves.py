"""Trust changes are leaves too: every change appends exactly one leaf with its target,
in the same transaction; a failed or no-op change appends none (CONTRACT "Trust
changes are leaves too")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.audit.leaf import LeafInput, LeafRefused, build_leaf
from taxaddr.audit.service import tree_size, verify_log
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.crypto import pki
from taxaddr.crypto.keystore import DEV_ISSUER_ID, FileKeyStore
from taxaddr.db import make_engine, write_transaction
from taxaddr.db.schema import PolicyVersion
from tests.store.store_helpers import SEED_ROWS, write_csv

# RFC 8037 appendix A.3: the thumbprint of the Ed25519 public key of appendix A.2.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
# RFC 7638 section 3.1: the RSA key's thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
    "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwk_thumbprint_matches_the_rfc_vectors() -> None:
    okp = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": "ignored", "use": "sig"}
    assert admin.jwk_thumbprint(okp) == RFC8037_THUMBPRINT
    rsa = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert admin.jwk_thumbprint(rsa) == RFC7638_THUMBPRINT
    with pytest.raises(ValueError, match="key type"):
        admin.jwk_thumbprint({"kty": "oct", "k": "AAAA"})


# -- the leaf itself ---------------------------------------------------------------------


def _admin_input(**overrides: Any) -> LeafInput:
    leaf = admin.admin_leaf(
        admin.cli_actor(),
        admin.ISSUER_ADDED,
        f"iss=court kid=k1 jkt={RFC8037_THUMBPRINT}",
        policy_version="none",
    )
    return LeafInput(**{**leaf.__dict__, **overrides})


def test_admin_leaf_has_target_and_empty_taxpayer_fields() -> None:
    obj = build_leaf(3, _admin_input())
    assert obj["outcome"] == "admin"
    assert obj["reason_codes"] == ["issuer_added"]
    assert obj["target"].startswith("iss=court kid=k1 jkt=")
    assert (obj["statute"], obj["subject_ref"]) == ("", "")
    assert obj["requester_id"].startswith("cli:")
    assert obj["role"] == "operator"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target": None}, "target"),
        ({"target": ""}, "target"),
        ({"target": "id=agent fp=123456789"}, "looks like a TIN"),
        ({"target": "id=123-45-6789"}, "looks like a TIN"),
        ({"target": "x" * 257}, "target"),
        ({"reason_codes": ("issuer_added", "case_revoked")}, "exactly one action"),
        ({"statute": "8 U.S.C. 1326"}, "empty statute"),
        ({"subject_ref": "ab" * 32}, "empty statute"),
    ],
)
def test_malformed_admin_leaves_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(LeafRefused, match=message):
        build_leaf(0, _admin_input(**overrides))


def test_digests_in_targets_pass_the_tin_guard() -> None:
    # A fingerprint or thumbprint holds digit runs by chance; only digests are exempt.
    fingerprint = "123456789" + "a" * 55
    build_leaf(0, _admin_input(target=f"id=agent-1 sha256={fingerprint}"))
    build_leaf(0, _admin_input(target="iss=c kid=k jkt=123456789" + "A" * 34))


def test_a_decision_leaf_may_not_carry_a_target() -> None:
    leaf = _admin_input(outcome="denied", reason_codes=("role_forbidden",), statute=None)
    with pytest.raises(LeafRefused, match="unexpected or missing fields"):
        build_leaf(0, LeafInput(**{**leaf.__dict__, "subject_ref": None}))


def test_unknown_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown trust-change action"):
        admin.admin_leaf(admin.cli_actor(), "issuer_swapped", "x", policy_version="none")


# -- every CLI change, end to end ---------------------------------------------------------


@pytest.fixture
def cli_env(env: dict[str, str], tmp_path: Path) -> Iterator[Engine]:
    assert run(["db", "upgrade"]) == 0
    engine = make_engine(get_settings().database_url)
    yield engine
    engine.dispose()


def _changes(engine: Engine) -> list[admin.TrustChange]:
    with Session(engine) as session:
        return admin.trust_changes(session)


def _size(engine: Engine) -> int:
    with Session(engine) as session:
        return tree_size(session)


def _one_new(engine: Engine, before: int, action: str) -> admin.TrustChange:
    changes = [c for c in _changes(engine) if c.leaf_index >= before]
    assert [c.action for c in changes] == [action]
    assert _size(engine) == before + 1
    return changes[0]


def test_each_cli_trust_change_appends_exactly_one_leaf(
    cli_env: Engine, keys_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = cli_env
    jwk_path = keys_dir / "issuers" / f"{DEV_ISSUER_ID}.jwk"
    jwk = json.loads(jwk_path.read_text())

    before = _size(engine)
    assert run(["issuer", "add", "--id", DEV_ISSUER_ID, "--jwk", str(jwk_path)]) == 0
    change = _one_new(engine, before, "issuer_added")
    assert change.target == (
        f"iss={DEV_ISSUER_ID} kid={jwk['kid']} jkt={admin.jwk_thumbprint(jwk)}"
    )
    assert change.requester_id.startswith("cli:")
    assert "@" in change.requester_id
    assert (change.role, change.agency) == ("operator", "cli")

    before = _size(engine)  # the same key again: no change, no leaf
    assert run(["issuer", "add", "--id", DEV_ISSUER_ID, "--jwk", str(jwk_path)]) == 0
    assert _size(engine) == before

    before = _size(engine)
    out = tmp_path / "certs"
    assert run(["requester", "add", "--id", "agent-7", "--agency", "FBI",
                "--role", "requester", "--issue-cert", str(out)]) == 0  # fmt: skip
    fingerprint = pki.fingerprint(
        x509.load_pem_x509_certificate((out / "agent-7.crt").read_bytes())
    )
    change = _one_new(engine, before, "requester_added")
    assert change.target == f"id=agent-7 sha256={fingerprint}"

    before = _size(engine)
    assert run(["requester", "revoke", "agent-7"]) == 0
    assert _one_new(engine, before, "requester_revoked").target == change.target
    before = _size(engine)
    assert run(["requester", "revoke", "agent-7"]) == 0  # already revoked
    assert _size(engine) == before

    before = _size(engine)
    assert run(["case", "revoke", "jti-to-revoke"]) == 0
    assert _one_new(engine, before, "case_revoked").target == "jti-to-revoke"
    before = _size(engine)
    assert run(["case", "revoke", "jti-to-revoke"]) == 0
    assert _size(engine) == before

    assert run(["import", str(write_csv(tmp_path / "a.csv", SEED_ROWS))]) == 0
    before = _size(engine)
    assert run(["keys", "rotate-kek"]) == 0
    assert _one_new(engine, before, "kek_rotated").target == "kek=v2"

    before = _size(engine)
    assert run(["issuer", "remove", "--id", DEV_ISSUER_ID]) == 0
    assert _one_new(engine, before, "issuer_key_removed").target.startswith(
        f"iss={DEV_ISSUER_ID} kid={jwk['kid']} jkt="
    )

    capsys.readouterr()
    assert run(["audit", "admin-log"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "leaf\ttime\taction\ttarget\tby"
    assert [line.split("\t")[2] for line in listed[1:]] == [
        "issuer_added",
        "requester_added",
        "requester_revoked",
        "case_revoked",
        "kek_rotated",
        "issuer_key_removed",
    ]
    assert run(["audit", "admin-log", "--json", "--from", "2000-01-01", "--to", "2000-01-02"]) == 0
    assert capsys.readouterr().out == ""
    with Session(engine) as session:
        keystore = FileKeyStore(keys_dir)
        assert verify_log(session, keystore, get_settings()).ok


def test_failed_changes_append_no_leaf(
    cli_env: Engine, keys_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = cli_env
    before = _size(engine)
    assert run(["issuer", "remove", "--id", "no-such-court"]) != 0
    assert run(["requester", "revoke", "nobody"]) != 0
    assert run(["case", "revoke", "has space"]) != 0
    bad = tmp_path / "bad.jwk"
    bad.write_text('{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k"}')
    assert run(["issuer", "add", "--id", "court", "--jwk", str(bad)]) != 0
    assert run(["audit", "admin-log", "--from", "yesterday"]) != 0
    assert _size(engine) == before
    assert "Traceback" not in capsys.readouterr().err


def test_a_change_whose_leaf_is_refused_does_not_happen(cli_env: Engine) -> None:
    from taxaddr.cases.issue import revoke
    from taxaddr.db.schema import RevokedCaseJti

    # A jti shaped like a TIN cannot go into a leaf: the revocation rolls back with it.
    with pytest.raises(LeafRefused), write_transaction(cli_env) as session:
        revoke(session, "123-45-6789", actor=admin.cli_actor())
    with Session(cli_env) as session:
        assert session.execute(select(RevokedCaseJti)).first() is None
        assert tree_size(session) == 0


# -- policy_changed ------------------------------------------------------------------------


def test_first_decision_under_a_version_records_it_once(engine: Engine) -> None:
    statutes = {"sha256:aa": ["18 U.S.C. 1028", "8 U.S.C. 1326"]}
    with write_transaction(engine) as session:
        first = admin.note_policy_version(session, "sha256:aa", statutes.get)
        assert first is not None
        assert first.leaf["reason_codes"] == ["policy_changed"]
        assert first.leaf["target"] == first.leaf["policy_version"] == "sha256:aa"
        assert (first.leaf["requester_id"], first.leaf["role"]) == ("taxaddr", "service")
    with write_transaction(engine) as session:
        assert admin.note_policy_version(session, "sha256:aa", statutes.get) is None
        assert admin.note_policy_version(session, "unknown", statutes.get) is None
        second = admin.note_policy_version(session, "sha256:bb", statutes.get)
        assert second is not None
        # a trust change made now is made under the newest version
        later = admin.record_change(session, admin.cli_actor(), admin.CASE_REVOKED, "j")
        assert later.leaf["policy_version"] == "sha256:bb"
    with Session(engine) as session:
        rows = session.execute(select(PolicyVersion).order_by(PolicyVersion.first_leaf)).scalars()
        history = [(r.version, r.first_leaf, r.criminal_statutes) for r in rows]
    assert history == [
        ("sha256:aa", 0, '["18 U.S.C. 1028", "8 U.S.C. 1326"]'),
        ("sha256:bb", 1, None),
    ]


def test_a_rolled_back_first_decision_leaves_the_version_unrecorded(engine: Engine) -> None:
    def first_decision_fails() -> None:
        with write_transaction(engine) as session:
            assert admin.note_policy_version(session, "sha256:cc", lambda _v: None) is not None
            raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        first_decision_fails()
    with write_transaction(engine) as session:  # the next decision records it after all
        again = admin.note_policy_version(session, "sha256:cc", lambda _v: None)
        assert again is not None
        assert again.index == 0


def test_the_trust_change_gauge_counts_the_log_incrementally(engine: Engine) -> None:
    gauge = admin.TrustChangeGauge()
    operator = admin.cli_actor()
    with write_transaction(engine) as session:
        admin.record_change(session, operator, admin.CASE_REVOKED, "j1")
        admin.record_change(session, operator, admin.ISSUER_ADDED, "iss=a kid=b")
    with Session(engine) as session:
        counts = gauge.refresh(session, tree_size(session))
    assert (counts["case_revoked"], counts["issuer_added"], counts["kek_rotated"]) == (1, 1, 0)
    with write_transaction(engine) as session:
        admin.record_change(session, operator, admin.CASE_REVOKED, "j2")
    with Session(engine) as session:
        assert gauge.refresh(session, tree_size(session))["case_revoked"] == 2
        assert gauge.refresh(session, tree_size(session))["case_revoked"] == 2  # no recount
        assert gauge.refresh(session, 1)["case_revoked"] == 1  # a smaller log: counted anew
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("taxaddr_trust_changes", {"action": "case_revoked"})
    assert value == 1


def test_a_version_recorded_by_an_uncommitted_group_is_not_cached(engine: Engine) -> None:
    # Two decisions in one transaction (a group commit), then the commit fails: the
    # next decision must record the version again.
    def group_that_fails() -> None:
        with write_transaction(engine) as session:
            assert admin.note_policy_version(session, "sha256:dd", lambda _v: None) is not None
            assert admin.note_policy_version(session, "sha256:dd", lambda _v: None) is None
            raise RuntimeError("the group's commit failed")

    with pytest.raises(RuntimeError):
        group_that_fails()
    with write_transaction(engine) as session:
        again = admin.note_policy_version(session, "sha256:dd", lambda _v: None)
        assert again is not None
