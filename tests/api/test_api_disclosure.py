"""POST /v1/disclosures end to end through the running mTLS server: every contract code."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from taxaddr.api.runtime import engine_for
from taxaddr.audit.admin import cli_actor
from taxaddr.audit.leaf import canonical
from taxaddr.cases.issue import revoke as revoke_case
from taxaddr.cases.usage import usage
from taxaddr.db import write_transaction
from taxaddr.disclosure.receipt import verify_receipt
from tests.api.apikit import (
    AMBIGUOUS,
    JANE,
    JOHN,
    POLICY_REFUSALS,
    UNKNOWN,
    Identity,
    RunningServer,
    World,
    body,
    case_tokens,
    leaves,
    tree_size,
)


def post(server: RunningServer, ident: Identity, payload: Any) -> httpx.Response:
    with server.client(ident) as client:
        return client.post("/v1/disclosures", json=payload)


def code_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def jti_of(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


# -- 200 -------------------------------------------------------------------------------


def test_disclosure_answers_address_receipt_and_audit_reference(
    server: RunningServer, world: World, agent: Identity, overseer: Identity
) -> None:
    case = world.case()
    before = tree_size(world)
    payload = body(case, tax_periods=["2023", "2024"])
    r = post(server, agent, payload)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {
        "disclosure_id",
        "case_number",
        "address",
        "use_restriction",
        "audit",
        "receipt",
    }
    # the newest as_of among the selected records wins
    assert answer["address"] == {
        "street": "1401 Quill Street NW",
        "city": "Washington",
        "state": "DC",
        "zip": "20001",
        "as_of": "2024-04-01",
    }
    assert answer["case_number"] == "1:26-cr-00123"
    assert "6103(i)(2)" in answer["use_restriction"]
    audit = answer["audit"]
    assert audit["leaf_index"] == before
    assert audit["tree_size"] == before + 1
    # the leaf is in the log, says "disclosed", and hashes (RFC 6962) to leaf_hash
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "disclosed"
    assert leaf["request_id"] == payload["request_id"]
    assert leaf["reason_codes"] == []
    assert hashlib.sha256(b"\x00" + canonical(leaf)).hexdigest() == audit["leaf_hash"]
    # the receipt is signed by the service's audit key over request, case, leaf
    claims = verify_receipt(answer["receipt"], world.keystore.audit_signing_key().public_key())
    assert claims["request_id"] == payload["request_id"]
    assert claims["case_jti"] == jti_of(case)
    assert claims["leaf_index"] == audit["leaf_index"]
    assert claims["leaf_hash"] == audit["leaf_hash"]
    # oversight can prove the leaf's inclusion
    with server.client(overseer) as client:
        proof = client.get(
            "/v1/audit/proof/inclusion",
            params={"leaf_index": audit["leaf_index"], "tree_size": audit["tree_size"]},
        )
    assert proof.status_code == 200
    assert proof.json()["leaf_index"] == audit["leaf_index"]


def test_receipt_does_not_verify_under_another_key(
    server: RunningServer, world: World, agent: Identity
) -> None:
    r = post(server, agent, body(world.case()))
    assert r.status_code == 200
    with pytest.raises(ValueError, match="signature"):
        verify_receipt(r.json()["receipt"], Ed25519PrivateKey.generate().public_key())


# -- 403 policy and case codes, each with exactly one audit leaf -------------------------


@pytest.mark.parametrize("refusal", POLICY_REFUSALS, ids=[r[1] for r in POLICY_REFUSALS])
def test_policy_refusals(
    server: RunningServer,
    world: World,
    agent: Identity,
    refusal: tuple[str, str, dict[str, Any], dict[str, Any]],
) -> None:
    expected, _label, case_over, body_over = refusal
    payload = body(world.case(**case_over), **body_over)
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 403
    assert code_of(r) == expected
    assert r.json()["error"]["request_id"] == payload["request_id"]
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "denied"
    assert leaf["reason_codes"][0] == expected


@pytest.mark.parametrize(
    "address",
    [
        None,
        {"street": "1401 Quill Street NW", "city": "Washington", "state": "DC"},
        {"street": "", "city": "Washington", "state": "DC", "zip": "20001"},
        {"street": "1401 Quill Street NW", "city": "   ", "state": "DC", "zip": "20001"},
    ],
)
def test_incomplete_address_is_403_not_422(
    server: RunningServer, world: World, agent: Identity, address: dict[str, str] | None
) -> None:
    payload = body(world.case())
    if address is None:
        del payload["subject"]["last_known_address"]
    else:
        payload["subject"]["last_known_address"] = address
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 403
    assert code_of(r) == "address_incomplete"
    assert tree_size(world) == before + 1


def test_several_problems_answer_the_first_and_log_all(
    server: RunningServer, world: World, agent: Identity
) -> None:
    payload = body(world.case(proceeding="civil"), reason="immigration enforcement")
    before = tree_size(world)
    r = post(server, agent, payload)
    assert code_of(r) == "proceeding_not_criminal"
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["reason_codes"][:1] == ["proceeding_not_criminal"]
    assert "reason_insufficient" in leaf["reason_codes"]


def test_case_quota_is_enforced(server: RunningServer, world: World, agent: Identity) -> None:
    case = world.case(max_disclosures=2)
    assert post(server, agent, body(case)).status_code == 200
    assert post(server, agent, body(case)).status_code == 200
    before = tree_size(world)
    r = post(server, agent, body(case))
    assert r.status_code == 403
    assert code_of(r) == "case_quota_exhausted"
    assert tree_size(world) == before + 1
    with Session(engine_for(world.settings)) as session:
        assert usage(session, jti_of(case)) == 2


@pytest.mark.parametrize(
    "expected",
    [
        "case_reference_malformed",
        "case_signature_invalid",
        "case_issuer_untrusted",
        "case_algorithm_forbidden",
        "case_audience_mismatch",
        "case_expired",
        "case_not_yet_valid",
    ],
)
def test_case_reference_refusals(
    server: RunningServer, world: World, agent: Identity, expected: str
) -> None:
    payload = body(case_tokens(world)[expected])
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 403
    assert code_of(r) == expected
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["reason_codes"] == [expected]
    assert leaf["outcome"] == "denied"


def test_revoked_case_reference(server: RunningServer, world: World, agent: Identity) -> None:
    case = world.case()
    assert post(server, agent, body(case)).status_code == 200
    with write_transaction(engine_for(world.settings)) as session:
        revoke_case(session, jti_of(case), actor=cli_actor())
    r = post(server, agent, body(case))
    assert r.status_code == 403
    assert code_of(r) == "case_revoked"


# -- identity and role ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["overseer", "prometheus", "root-admin"])
def test_other_roles_cannot_request_disclosures(
    server: RunningServer, world: World, who: str
) -> None:
    before = tree_size(world)
    r = post(server, world.identities[who], body(world.case()))
    assert r.status_code == 403
    assert code_of(r) == "role_forbidden"
    assert tree_size(world) == before + 1  # a registered identity's refusal is audited
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["requester_id"] == who
    assert leaf["reason_codes"] == ["role_forbidden"]


def test_revoked_requester_is_refused_and_audited(server: RunningServer, world: World) -> None:
    from taxaddr.disclosure.requesters import revoke

    ident = world.identity("agent-soon-gone")
    revoke(engine_for(world.settings), ident.id, actor=cli_actor())
    before = tree_size(world)
    r = post(server, ident, body(world.case(requesters=[ident.id])))
    assert r.status_code == 403
    assert code_of(r) == "requester_revoked"
    assert tree_size(world) == before + 1


def test_unknown_requester_is_refused_without_audit(server: RunningServer, world: World) -> None:
    ident = world.identity("agent-unregistered", register=False)
    before = tree_size(world)
    r = post(server, ident, body(world.case()))
    assert r.status_code == 403
    assert code_of(r) == "requester_unknown"
    assert tree_size(world) == before


# -- replay, match -------------------------------------------------------------------------


def test_replayed_request_id_is_409_and_discloses_nothing(
    server: RunningServer, world: World, agent: Identity
) -> None:
    case = world.case()
    payload = body(case)
    assert post(server, agent, payload).status_code == 200
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 409
    assert code_of(r) == "request_replayed"
    assert "address" not in r.json()
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "denied"
    assert leaf["reason_codes"] == ["request_replayed"]
    with Session(engine_for(world.settings)) as session:
        assert usage(session, jti_of(case)) == 1


def test_no_unique_match_is_uniform(server: RunningServer, world: World, agent: Identity) -> None:
    case = world.case()
    variants = {
        "unknown tin": body(case, UNKNOWN, tax_periods=["2023", "2024"]),
        "name mismatch": body(
            case, {"tin": JANE["tin"], "name": "JANE X DOE"}, tax_periods=["2023", "2024"]
        ),
        "ambiguous": body(case, AMBIGUOUS, tax_periods=["2023", "2024"]),
        "no record in period": body(case, JOHN, tax_periods=["2023"]),
    }
    answers = {}
    for label, payload in variants.items():
        before = tree_size(world)
        r = post(server, agent, payload)
        assert r.status_code == 404, label
        assert tree_size(world) == before + 1, label
        (leaf,) = leaves(world, before, before + 1)
        assert leaf["outcome"] == "no_match"
        err = r.json()["error"]
        assert err.pop("request_id") == payload["request_id"]
        headers = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
        answers[label] = (r.status_code, err, headers)
    first = next(iter(answers.values()))
    assert all(a == first for a in answers.values()), answers
    assert first[1]["code"] == "no_unique_match"


# -- 413 / 422: no audit leaf ------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.pop("case_reference"),
        lambda p: p.update(tax_periods=[]),
        lambda p: p.update(tax_periods=["24"]),
        lambda p: p["subject"].update(tin="12-345"),
        lambda p: p["subject"].update(tin="000-12-3456"),
        lambda p: p["subject"].update(name="R2D2"),
        lambda p: p.update(extra="field"),
        lambda p: p.update(request_id="123-45-6789"),
        lambda p: p.update(statute=5),
    ],
)
def test_invalid_bodies_are_422_without_audit(
    server: RunningServer, world: World, agent: Identity, mutate: Any
) -> None:
    payload = body(world.case())
    mutate(payload)
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 422
    assert code_of(r) == "request_invalid"
    assert tree_size(world) == before


def test_not_json_is_422(server: RunningServer, agent: Identity, world: World) -> None:
    with server.client(agent) as client:
        r = client.post("/v1/disclosures", content=b"{not json")
    assert r.status_code == 422
    assert code_of(r) == "request_invalid"


def test_body_over_64_kib_is_413_without_audit(
    server: RunningServer, world: World, agent: Identity
) -> None:
    payload = body(world.case(), reason="x" * (65 * 1024))
    before = tree_size(world)
    r = post(server, agent, payload)
    assert r.status_code == 413
    assert code_of(r) == "request_too_large"
    assert tree_size(world) == before


def test_streamed_body_over_limit_is_413(server: RunningServer, agent: Identity) -> None:
    def chunks() -> Any:  # chunked transfer: no Content-Length to trust
        for _ in range(80):
            yield b"x" * 1024

    with server.client(agent) as client:
        r = client.post("/v1/disclosures", content=chunks())
    assert r.status_code == 413
    assert code_of(r) == "request_too_large"


def test_unknown_route_is_an_envelope(server: RunningServer, agent: Identity) -> None:
    with server.client(agent) as client:
        r = client.get("/v1/nothing-here")
        m = client.get("/v1/disclosures")
    assert r.status_code == 404
    assert code_of(r) == "not_found"
    assert m.status_code == 405
    assert code_of(m) == "method_not_allowed"


def test_metrics_count_outcomes_with_bounded_labels(
    server: RunningServer, world: World, agent: Identity
) -> None:
    from prometheus_client import REGISTRY

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    disclosed = {"agency": "ICE-HSI", "outcome": "disclosed", "reason": "none"}
    denied = {"agency": "ICE-HSI", "outcome": "denied", "reason": "reason_insufficient"}
    invalid = {"agency": "ICE-HSI", "outcome": "invalid", "reason": "request_invalid"}
    stat = {"agency": "ICE-HSI", "statute": "8 U.S.C. 1253(a)(1)"}
    before = (
        value("taxaddr_disclosure_requests_total", **disclosed),
        value("taxaddr_disclosure_requests_total", **denied),
        value("taxaddr_disclosure_requests_total", **invalid),
        value("taxaddr_disclosures_total", **stat),
        value("taxaddr_disclosure_request_seconds_count"),
    )
    case = world.case()
    assert post(server, agent, body(case)).status_code == 200
    assert post(server, agent, body(case, reason="immigration enforcement")).status_code == 403
    assert post(server, agent, {"request_id": "x"}).status_code == 422
    after = (
        value("taxaddr_disclosure_requests_total", **disclosed),
        value("taxaddr_disclosure_requests_total", **denied),
        value("taxaddr_disclosure_requests_total", **invalid),
        value("taxaddr_disclosures_total", **stat),
        value("taxaddr_disclosure_request_seconds_count"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 3]
