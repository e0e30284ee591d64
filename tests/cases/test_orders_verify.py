"""Court-order verification (CONTRACT "Court orders"): the case reference's numbered
steps with the ``order_*`` codes — the happy path and one named refusal per check."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers, jws
from taxaddr.cases.orders import Stay, VerifiedOrder, apply_order, verify_order
from taxaddr.config import Settings
from taxaddr.db import write_transaction
from taxaddr.errors import OrderError
from tests.cases.casekit import ISS, KID, NOW, NOW_TS, TokenMaker, trust

b64 = jws.b64url_encode
MAL, ALG = "order_malformed", "order_algorithm_forbidden"
UNT, SIG = "order_issuer_untrusted", "order_signature_invalid"


def stay_claims(**order: Any) -> dict[str, Any]:
    return {
        "iss": ISS,
        "aud": "taxaddr",
        "jti": "order-0001",
        "iat": NOW_TS - 60,
        "nbf": NOW_TS - 60,
        "order": {
            "kind": "stay",
            "number": "1:25-cv-04321",
            "court": "D.D.C.",
            "scope": {
                "agencies": ["ICE-HSI"],
                "statutes": [],
                "case_numbers": [],
                "requesters": [],
            },
            **order,
        },
    }


@pytest.fixture
def orders(issuer_key: Ed25519PrivateKey) -> TokenMaker:
    return TokenMaker(issuer_key, claims=stay_claims())


def refusal(token: str, session: Session, settings: Settings) -> tuple[str, int]:
    with pytest.raises(OrderError) as info:
        verify_order(token, session=session, settings=settings, now=NOW)
    return info.value.code, info.value.status


def ok(token: str, session: Session, settings: Settings) -> VerifiedOrder:
    return verify_order(token, session=session, settings=settings, now=NOW)


def test_a_valid_stay_verifies(orders: TokenMaker, session: Session, settings: Settings) -> None:
    token = orders.make()
    order = ok(token, session, settings)
    assert (order.iss, order.jti, order.kind, order.exp) == (ISS, "order-0001", "stay", None)
    assert order.scope["agencies"] == ["ICE-HSI"]
    assert order.token_sha256 == hashlib.sha256(token.encode()).hexdigest()


def test_an_es256_order_verifies(sqlite_engine: Engine, settings: Settings) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    trust(sqlite_engine, key, kid="p256-key")
    token = TokenMaker(Ed25519PrivateKey.generate(), claims=stay_claims()).make(
        header={"alg": "ES256", "kid": "p256-key"}, key=key
    )
    with Session(sqlite_engine) as session:
        assert ok(token, session, settings).kind == "stay"


def _payload(token: str) -> str:
    return token.split(".")[1]


# step, then the refusal each token draws: (label, token builder, code)
def _cases(orders: TokenMaker) -> list[tuple[str, str, str]]:
    good = orders.make()
    head, payload, sig = good.split(".")
    other = Ed25519PrivateKey.generate()
    tampered = stay_claims()
    tampered["order"]["scope"]["agencies"] = []
    hs_head = b64(jws.compact_json({"alg": "HS256", "kid": KID}))
    hs_sig = b64(hmac.new(b"k", f"{hs_head}.{payload}".encode(), hashlib.sha256).digest())
    dup = b'{"iss":"test-court","iss":"test-court"}'
    lift_without_target = stay_claims(kind="lift")
    del lift_without_target["order"]["scope"]
    none_head = b64(jws.compact_json({"alg": "none", "kid": KID}))
    tampered_b64 = b64(jws.compact_json(tampered))
    not_a_list = stay_claims(scope={"agencies": "ICE-HSI"})
    hdr = orders.header
    return [
        # 1. size
        ("step1-oversized", "a" * 20_000, MAL),
        ("step1-non-ascii", good + "é", MAL),
        # 2. parse
        ("step2-two-segments", f"{head}.{payload}", MAL),
        ("step2-bad-base64", f"{head}.{payload}!.{sig}", MAL),
        ("step2-duplicate-member", f"{head}.{b64(dup)}.{sig}", MAL),
        # 3. header
        ("step3-alg-none", f"{none_head}.{payload}.", ALG),
        ("step3-hs256", f"{hs_head}.{payload}.{hs_sig}", ALG),
        ("step3-jku", orders.make(header=hdr(jku="https://evil")), ALG),
        ("step3-unknown-header", orders.make(header=hdr(zip="DEF")), MAL),
        ("step3-no-kid", orders.make(header={"alg": "EdDSA"}), MAL),
        # 4. key
        ("step4-unknown-issuer", orders.make(iss="rogue-court"), UNT),
        ("step4-unknown-kid", orders.make(header=hdr(kid="other-kid")), UNT),
        ("step4-alg-not-the-keys", orders.make(header=hdr(alg="ES256")), ALG),
        # 5. signature
        ("step5-wrong-key", orders.make(key=other), SIG),
        ("step5-tampered-scope", f"{head}.{tampered_b64}.{sig}", SIG),
        # 6. claims
        ("step6-bad-kind", orders.make(claims=stay_claims(kind="ban")), MAL),
        ("step6-unknown-member", orders.make(claims=stay_claims(extra=1)), MAL),
        ("step6-scope-not-a-list", orders.make(claims=not_a_list), MAL),
        ("step6-lift-without-target", orders.make(claims=lift_without_target), MAL),
        ("step6-stay-that-lifts", orders.make(claims=stay_claims(lifts="x")), MAL),
        ("step6-exp-before-nbf", orders.make(exp=NOW_TS - 120), MAL),
        ("step6-no-number", orders.make(claims=stay_claims(number="")), MAL),
        ("step6-tin-shaped-jti", orders.make(jti="212-55-1234"), MAL),
        ("step6-control-character", orders.make(claims=stay_claims(court="D.D.C.\tx")), MAL),
        # 7. audience
        ("step7-audience", orders.make(aud="elsewhere"), "order_audience_mismatch"),
        # 8. time
        ("step8-expired", orders.make(nbf=NOW_TS - 7200, exp=NOW_TS - 3600), "order_expired"),
        ("step8-issued-in-the-future", orders.make(iat=NOW_TS + 3600), MAL),
    ]  # fmt: skip


LABELS = [
    "step1-oversized", "step1-non-ascii", "step2-two-segments", "step2-bad-base64",
    "step2-duplicate-member", "step3-alg-none", "step3-hs256", "step3-jku",
    "step3-unknown-header", "step3-no-kid", "step4-unknown-issuer", "step4-unknown-kid",
    "step4-alg-not-the-keys", "step5-wrong-key", "step5-tampered-scope", "step6-bad-kind",
    "step6-unknown-member", "step6-scope-not-a-list", "step6-lift-without-target",
    "step6-stay-that-lifts", "step6-exp-before-nbf", "step6-no-number",
    "step6-tin-shaped-jti", "step6-control-character", "step7-audience",
    "step8-expired", "step8-issued-in-the-future",
]  # fmt: skip


@pytest.mark.parametrize("label", LABELS)
def test_each_check_refuses_with_its_code(
    orders: TokenMaker, session: Session, settings: Settings, label: str
) -> None:
    cases = {name: (token, code) for name, token, code in _cases(orders)}
    assert sorted(cases) == sorted(LABELS)
    token, code = cases[label]
    got, status = refusal(token, session, settings)
    assert got == code
    assert status == (422 if code == "order_malformed" else 403)


def test_a_removed_or_not_yet_valid_key_is_untrusted(
    sqlite_engine: Engine, settings: Settings
) -> None:
    key = Ed25519PrivateKey.generate()
    trust(sqlite_engine, key, kid="later", not_before=NOW + timedelta(days=1))
    token = TokenMaker(key, claims=stay_claims()).make(header={"alg": "EdDSA", "kid": "later"})
    with Session(sqlite_engine) as session:
        assert refusal(token, session, settings)[0] == "order_issuer_untrusted"
    key2 = Ed25519PrivateKey.generate()
    trust(sqlite_engine, key2, kid="gone")
    with write_transaction(sqlite_engine) as s:
        issuers.remove(s, ISS, kid="gone", actor=cli_actor())
    token2 = TokenMaker(key2, claims=stay_claims()).make(header={"alg": "EdDSA", "kid": "gone"})
    with Session(sqlite_engine) as session:
        assert refusal(token2, session, settings)[0] == "order_issuer_untrusted"


def test_the_same_order_twice_and_a_lift_of_an_unknown_stay(
    orders: TokenMaker, sqlite_engine: Engine, session: Session, settings: Settings
) -> None:
    token = orders.make()
    with write_transaction(sqlite_engine) as s:
        apply_order(s, token, settings=settings, actor=cli_actor(), now=NOW)
    with pytest.raises(OrderError) as again, write_transaction(sqlite_engine) as s:
        apply_order(s, token, settings=settings, actor=cli_actor(), now=NOW)
    assert (again.value.code, again.value.status) == ("order_replayed", 409)
    lift = copy.deepcopy(stay_claims(kind="lift", lifts="no-such-stay"))
    del lift["order"]["scope"]
    lift["jti"] = "order-0002"
    with pytest.raises(OrderError) as unknown, write_transaction(sqlite_engine) as s:
        apply_order(s, orders.make(claims=lift), settings=settings, actor=cli_actor(), now=NOW)
    assert (unknown.value.code, unknown.value.status) == ("order_unknown", 404)


@pytest.mark.parametrize(
    ("scope", "request_", "covered"),
    [
        ({}, ("ICE-HSI", "8 U.S.C. 1326", "1:26-cr-1", "agent-1"), True),
        ({"agencies": ["FBI"]}, ("ICE-HSI", "8 U.S.C. 1326", "1:26-cr-1", "agent-1"), False),
        ({"agencies": ["FBI", "ICE-HSI"]}, ("ICE-HSI", "8 U.S.C. 1326", "1:26-cr-1", "a"), True),
        ({"statutes": ["8 U.S.C. 1326"]}, ("X", "8 U.S.C. 1326", "n", "r"), True),
        ({"statutes": ["8 U.S.C. 1326"]}, ("X", "8 U.S.C. 1253(a)(1)", "n", "r"), False),
        ({"case_numbers": ["1:26-cr-1"]}, ("X", "s", "1:26-cr-1", "r"), True),
        ({"case_numbers": ["1:26-cr-1"]}, ("X", "s", "1:26-cr-10", "r"), False),
        ({"requesters": ["agent-1"]}, ("X", "s", "n", "agent-1"), True),
        ({"requesters": ["agent-1"]}, ("X", "s", "n", "agent-2"), False),
        ({"agencies": ["X"], "requesters": ["agent-2"]}, ("X", "s", "n", "agent-1"), False),
    ],
)
def test_scope_covers_when_every_non_empty_list_holds_the_value(
    scope: dict[str, list[str]], request_: tuple[str, str, str, str], covered: bool
) -> None:
    agency, statute, number, requester = request_
    stay = Stay("j", "n", "c", scope)
    assert (
        stay.covers(agency=agency, statute=statute, case_number=number, requester_id=requester)
        is covered
    )


def test_a_refused_order_leaves_nothing(
    orders: TokenMaker, sqlite_engine: Engine, settings: Settings
) -> None:
    bad = orders.make(aud="elsewhere")
    with pytest.raises(OrderError), write_transaction(sqlite_engine) as s:
        apply_order(s, bad, settings=settings, actor=cli_actor(), now=NOW)
    with Session(sqlite_engine) as s:
        from taxaddr.db.repositories import orders as repo

        assert repo.all_orders(s) == []
    assert json.loads(base64.urlsafe_b64decode(_payload(bad) + "=="))["aud"] == "elsewhere"
