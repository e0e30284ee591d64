"""Court orders (stays) end to end over mTLS: ``POST /v1/orders`` (role admin) verifies an
order as strictly as a case reference (each forged order refused with its code), a stay
in force refuses covered disclosures with ``disclosure_stayed`` (one denial leaf), a lift
ends it, and an order applied while requests are in flight leaves no disclosure in its
scope after its own leaf. The CLI applies and lists orders from the same database."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from taxaddr.cases import jws
from taxaddr.cases.issue import issuer_kid
from taxaddr.cases.order_issue import order_claims, sign_order
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.crypto.keystore import DEV_ISSUER_ID
from tests.api.apikit import (
    JANE,
    JOHN,
    STATUTE,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    leaves,
    run_server,
    tree_size,
)

CASE_NUMBER = "1:26-cr-00123"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("orders-world"))
    w.identity("agent-1")
    w.identity("agent-2", agency="FBI")
    w.identity("judge-clerk", role="admin", agency="IRS")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[RunningServer]:
    with run_server(world) as srv:
        yield srv


def _claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "issuer": DEV_ISSUER_ID,
        "kind": "stay",
        "number": "1:25-cv-04321",
        "court": "D.D.C.",
        "now": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5),
    }
    values.update(overrides)
    return order_claims(**values)


def _sign(
    world: World, claims: dict[str, Any], header: dict[str, Any] | None = None, key: Any = None
) -> str:
    if header is None and key is None:
        return sign_order(world.keystore, world.keys_dir, claims)
    hdr = {"alg": "EdDSA", "kid": issuer_kid(world.keystore, world.keys_dir, DEV_ISSUER_ID)}
    hdr.update(header or {})
    return jws.sign_compact(hdr, claims, key or world.keystore.issuer_signing_key(DEV_ISSUER_ID))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _apply(server: RunningServer, world: World, token: str, who: str = "judge-clerk") -> Any:
    with server.client(world.identities[who]) as client:
        return client.post("/v1/orders", json={"order": token})


def _disclose(server: RunningServer, world: World, who: str = "agent-1", **case: Any) -> Any:
    values = {"requesters": ["agent-1", "agent-2"], **case}
    payload = body(world.case(**values), JANE)
    with server.client(world.identities[who]) as client:
        return client.post("/v1/disclosures", json=payload)


def _lift(server: RunningServer, world: World, stay_jti: str) -> None:
    answer = _apply(server, world, _sign(world, _claims(kind="lift", lifts=stay_jti, scope=None)))
    assert answer.status_code == 201, answer.text


def test_stay_refuses_covered_disclosures_until_lifted(server: RunningServer, world: World) -> None:
    assert _disclose(server, world).status_code == 200
    stay = _claims(scope={"agencies": ["ICE-HSI"]})
    before = tree_size(world)
    answer = _apply(server, world, _sign(world, stay))
    assert answer.status_code == 201, answer.text
    doc = answer.json()
    assert set(doc) == {"jti", "kind", "number", "court", "nbf", "exp", "audit"}
    assert (doc["jti"], doc["kind"], doc["exp"]) == (stay["jti"], "stay", None)
    assert doc["audit"]["leaf_index"] == before
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "admin"
    assert leaf["reason_codes"] == ["order_applied"]
    assert leaf["target"] == stay["jti"] == leaf["case_jti"]
    assert leaf["case_number_hash"] == hashlib.sha256(b"1:25-cv-04321").hexdigest()
    assert (leaf["requester_id"], leaf["agency"], leaf["role"]) == ("judge-clerk", "IRS", "admin")
    assert leaf["statute"] == ""
    assert leaf["subject_ref"] == ""

    before = tree_size(world)
    refused = _disclose(server, world)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "disclosure_stayed"
    assert "address" not in refused.json()
    (leaf,) = leaves(world, before, before + 1)
    assert (leaf["outcome"], leaf["reason_codes"]) == ("denied", ["disclosure_stayed"])

    _lift(server, world, stay["jti"])
    assert _disclose(server, world).status_code == 200


@pytest.mark.parametrize(
    ("scope", "covered", "not_covered"),
    [
        ({}, {}, None),  # empty scope: all
        ({"agencies": ["FBI"]}, {"who": "agent-2", "agency": "FBI"}, {}),
        ({"statutes": [STATUTE]}, {}, {"statutes": ["8 U.S.C. 1326"], "statute": "8 U.S.C. 1326"}),
        ({"case_numbers": ["1:26-cr-00555"]}, {"number": "1:26-cr-00555"}, {}),
        ({"requesters": ["agent-1"]}, {}, {"who": "agent-2", "agency": "FBI"}),
        (
            {"agencies": ["ICE-HSI"], "requesters": ["agent-1"], "case_numbers": [CASE_NUMBER]},
            {},
            {"number": "1:26-cr-00556"},
        ),
    ],
    ids=["empty-all", "agencies", "statutes", "case-numbers", "requesters", "all-lists"],
)
def test_scope_matching_per_list(
    server: RunningServer,
    world: World,
    scope: dict[str, list[str]],
    covered: dict[str, Any],
    not_covered: dict[str, Any] | None,
) -> None:
    stay = _claims(scope=scope)
    assert _apply(server, world, _sign(world, stay)).status_code == 201
    try:
        assert _request(server, world, covered).json()["error"]["code"] == "disclosure_stayed"
        if not_covered is not None:
            answer = _request(server, world, not_covered)
            assert answer.status_code == 200, answer.text
    finally:
        _lift(server, world, stay["jti"])
    assert _request(server, world, covered).status_code == 200


def _request(server: RunningServer, world: World, spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    who = spec.pop("who", "agent-1")
    statute = spec.pop("statute", STATUTE)
    values = {"requesters": ["agent-1", "agent-2"], **spec}
    payload = body(world.case(**values), JANE, statute=statute)
    if statute != STATUTE:
        payload["reason"] = payload["reason"].replace(STATUTE, statute)
    with server.client(world.identities[who]) as client:
        return client.post("/v1/disclosures", json=payload)


def _forgeries(world: World) -> dict[str, tuple[str, int, str]]:
    """A forged or unusable order for each refusal: (token, status, code)."""
    good = _sign(world, _claims())
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["order"]["scope"]["agencies"] = ["NOBODY"]
    tampered = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
    none_header = _b64(json.dumps({"alg": "none", "kid": "dev-court-2026"}).encode())
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": "dev-court-2026"}).encode())
    hs_sig = _b64(hmac.new(b"secret", f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    return {
        "alg-none": (f"{none_header}.{payload}.", 403, "order_algorithm_forbidden"),
        "hs256": (f"{hs_header}.{payload}.{hs_sig}", 403, "order_algorithm_forbidden"),
        "wrong-key": (
            _sign(world, _claims(), key=Ed25519PrivateKey.generate()),
            403,
            "order_signature_invalid",
        ),
        "untrusted-issuer": (
            _sign(world, {**_claims(), "iss": "rogue-court"}, key=Ed25519PrivateKey.generate()),
            403,
            "order_issuer_untrusted",
        ),
        "wrong-audience": (
            _sign(world, {**_claims(), "aud": "elsewhere"}),
            403,
            "order_audience_mismatch",
        ),
        "expired": (_sign(world, _claims(now=past, valid_days=1)), 403, "order_expired"),
        "tampered-scope": (tampered, 403, "order_signature_invalid"),
        "malformed": ("not-a-jws", 422, "order_malformed"),
        "bad-kind": (
            _sign(world, {**_claims(), "order": {"kind": "ban", "number": "n", "court": "c"}}),
            422,
            "order_malformed",
        ),
        "embedded-jwk": (
            _sign(world, _claims(), header={"jwk": {"kty": "OKP"}}),
            403,
            "order_algorithm_forbidden",
        ),
    }


@pytest.mark.parametrize(
    "label",
    [
        "alg-none",
        "hs256",
        "wrong-key",
        "untrusted-issuer",
        "wrong-audience",
        "expired",
        "tampered-scope",
        "malformed",
        "bad-kind",
        "embedded-jwk",
    ],
)
def test_forged_orders_are_refused_with_their_codes(
    server: RunningServer, world: World, label: str
) -> None:
    token, status, code = _forgeries(world)[label]
    before = tree_size(world)
    answer = _apply(server, world, token)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert tree_size(world) == before  # a refused order changes nothing and is no leaf
    assert _disclose(server, world).status_code == 200


def test_lift_of_an_unknown_stay_and_the_same_order_twice(
    server: RunningServer, world: World
) -> None:
    answer = _apply(
        server, world, _sign(world, _claims(kind="lift", lifts="no-such-stay", scope=None))
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "order_unknown"
    stay = _sign(world, _claims(scope={"case_numbers": ["1:26-cr-09999"]}))
    assert _apply(server, world, stay).status_code == 201
    before = tree_size(world)
    again = _apply(server, world, stay)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_replayed"
    assert tree_size(world) == before


def test_only_an_admin_applies_orders(server: RunningServer, world: World) -> None:
    answer = _apply(server, world, _sign(world, _claims()), who="agent-1")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "role_forbidden"
    assert _disclose(server, world).status_code == 200


def test_no_disclosure_in_scope_after_the_orders_leaf_under_concurrency(
    server: RunningServer, world: World
) -> None:
    case = world.case(requesters=["agent-1"], number="1:26-cr-00777", max_disclosures=10_000)
    stay = _claims(scope={"case_numbers": ["1:26-cr-00777"]})
    start = tree_size(world)
    results: list[int] = []
    go = threading.Barrier(21)
    applied_event = threading.Event()

    def ask() -> None:
        # requests in flight before, while and after the order is applied: each client
        # keeps asking until the order's answer arrived, then twice more
        go.wait()
        with server.client(world.identities["agent-1"]) as client:
            after = 0
            for _ in range(200):
                results.append(client.post("/v1/disclosures", json=body(case, JOHN)).status_code)
                if applied_event.is_set():
                    after += 1
                    if after == 2:
                        break

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    go.wait()
    applied = _apply(server, world, _sign(world, stay))
    applied_event.set()
    for t in threads:
        t.join()
    assert applied.status_code == 201, applied.text
    order_leaf = applied.json()["audit"]["leaf_index"]
    assert sorted(set(results)) == [200, 403]  # some before the order, some after
    entries = leaves(world, start, tree_size(world))
    assert len(entries) == len(results) + 1  # one leaf per answer, and the order's
    after = [(i, e) for i, e in enumerate(entries, start) if i > order_leaf]
    assert after, "no request came after the order"
    assert all(e["outcome"] == "denied" for _i, e in after), after[:3]
    assert all(e["reason_codes"] == ["disclosure_stayed"] for _i, e in after)
    before = [e for i, e in enumerate(entries, start) if i < order_leaf]
    assert all(e["outcome"] == "disclosed" for e in before)
    _lift(server, world, stay["jti"])


def test_cli_order_apply_and_list(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    for key, value in {
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(world.keys_dir),
        "TAXADDR_DATABASE_URL": world.settings.database_url,
        "TAXADDR_POLICY_DIR": str(world.settings.policy_dir),
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        args = [
            "order",
            "issue",
            "--issuer",
            DEV_ISSUER_ID,
            "--kind",
            "stay",
            "--number",
            "1:25-cv-1",
        ]
        assert run([*args, "--court", "D. Mass.", "--case-number", "1:26-cr-04444"]) == 0
        token = capsys.readouterr().out.strip()
        file = tmp_path / "stay.jws"
        file.write_text(token + "\n")
        assert run(["order", "apply", str(file)]) == 0
        applied = json.loads(capsys.readouterr().out)
        assert applied["kind"] == "stay"
        assert run(["order", "apply", token]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "order_replayed" in err
        assert run(["order", "list"]) == 0
        listing = capsys.readouterr().out.splitlines()
        assert listing[0] == "jti\tkind\tnumber\tcourt\tnbf\texp\tin_force"
        row = next(line for line in listing if line.startswith(applied["jti"]))
        assert row.endswith("\tstay\t1:25-cv-1\tD. Mass.\t" + str(applied["nbf"]) + "\t-\tyes")
        assert run(["order", "apply", "a.b.c"]) == 1
        assert "order_malformed" in capsys.readouterr().err
        assert run(["order", "apply", str(tmp_path / "missing.jws")]) == 1
        assert "usage_error" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
