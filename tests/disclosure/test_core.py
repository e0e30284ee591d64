"""The decision core in process (no server, no sockets): every outcome over the contract's
denial list, and whether it carries its audit leaf as CONTRACT.md says.

Every answer to a registered identity with status 200, 403, 404 or 409 appends exactly
one leaf (the outcome carries it); 422, 429 and 503, and a certificate nobody
registered, append none (the outcome carries none). The end-to-end tests over mTLS
(tests/api/test_api_disclosure.py) check the same codes as HTTP answers.
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import pytest

from taxaddr.api.runtime import engine_for, keystore_for
from taxaddr.audit.admin import cli_actor
from taxaddr.audit.leaf import new_server_id
from taxaddr.cases.issue import revoke as revoke_case
from taxaddr.db import write_transaction
from taxaddr.disclosure import core
from taxaddr.disclosure.core import DisclosureService, disclose
from taxaddr.disclosure.outcome import Caller, Disclosed, NoMatch, Outcome, Refused, Unavailable
from taxaddr.disclosure.ratelimit import RateLimiter
from taxaddr.disclosure.receipt import verify_receipt
from taxaddr.disclosure.requesters import revoke
from taxaddr.errors import AuditUnavailable, KeyMaterialError, PolicyUnavailable
from tests.api.apikit import (
    AMBIGUOUS,
    JANE,
    JOHN,
    POLICY_REFUSALS,
    UNKNOWN,
    Identity,
    World,
    body,
    case_tokens,
    leaves,
    tree_size,
)


def service(world: World, *, rate_limit: int = 0) -> DisclosureService:
    return DisclosureService(
        settings=world.settings,
        engine=engine_for(world.settings),
        keystore=keystore_for(world.settings),
        limiter=RateLimiter(rate_limit),
    )


@pytest.fixture
def svc(world: World) -> Any:
    s = service(world)
    yield s
    s.close()


def der(ident: Identity) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ident.cert.read_text())


def decide(svc: DisclosureService, ident: Identity, payload: Any) -> Outcome:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return disclose(svc, der(ident), raw, Caller(request_id=new_server_id()))


def agent(world: World) -> Identity:
    return world.identities["agent-1"]


def jti_of(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def assert_refused_with_leaf(
    world: World, outcome: Outcome, before: int, code: str, status: int = 403
) -> Refused:
    """A refusal whose denial leaf committed: exactly one new leaf, the outcome's."""
    assert isinstance(outcome, Refused), outcome
    assert outcome.code == code
    assert outcome.error.status == status
    assert outcome.leaf is not None
    assert outcome.leaf.index == before
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf == outcome.leaf.leaf
    assert leaf["outcome"] == "denied"
    assert leaf["reason_codes"][0] == code
    return outcome


def assert_refused_without_leaf(
    world: World, outcome: Outcome, before: int, code: str, status: int
) -> Refused:
    assert isinstance(outcome, Refused), outcome
    assert outcome.code == code
    assert outcome.error.status == status
    assert outcome.leaf is None
    assert tree_size(world) == before
    return outcome


# -- 200 -------------------------------------------------------------------------------


def test_disclosed_carries_its_leaf_answer_and_receipt(world: World, svc: Any) -> None:
    case = world.case()
    payload = body(case, tax_periods=["2023", "2024"])
    before = tree_size(world)
    outcome = decide(svc, agent(world), payload)
    assert isinstance(outcome, Disclosed), outcome
    assert outcome.leaf.index == before
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf == outcome.leaf.leaf
    assert leaf["outcome"] == "disclosed"
    assert leaf["reason_codes"] == []
    answer = outcome.answer
    assert answer["address"]["street"] == "1401 Quill Street NW"
    assert answer["audit"] == {
        "leaf_index": before,
        "leaf_hash": outcome.leaf.leaf_hash.hex(),
        "tree_size": before + 1,
    }
    claims = verify_receipt(answer["receipt"], world.keystore.audit_signing_key().public_key())
    assert claims["leaf_index"] == before
    assert claims["case_jti"] == jti_of(case)
    # who asked, for the edge's log and metrics: the registration and the client's id
    assert outcome.caller.requester is not None
    assert outcome.caller.requester.id == "agent-1"
    assert outcome.caller.client_request_id == payload["request_id"]
    assert outcome.statute == payload["statute"]


# -- 403 with one leaf: identity, role, case reference, policy ----------------------------


def test_revoked_requester_is_refused_with_a_leaf(world: World, svc: Any) -> None:
    ident = world.identity("agent-revoked")
    revoke(engine_for(world.settings), ident.id, actor=cli_actor())
    before = tree_size(world)
    outcome = decide(svc, ident, body(world.case(requesters=[ident.id])))
    refused = assert_refused_with_leaf(world, outcome, before, "requester_revoked")
    assert refused.caller.requester is not None
    assert refused.caller.requester.revoked


def test_revoked_requester_with_an_invalid_body_gets_the_servers_request_id(
    world: World, svc: Any
) -> None:
    ident = world.identity("agent-revoked-2")
    revoke(engine_for(world.settings), ident.id, actor=cli_actor())
    before = tree_size(world)
    caller = Caller(request_id="not-a-canonical-uuid")
    outcome = disclose(svc, der(ident), b"{not json", caller)
    assert_refused_with_leaf(world, outcome, before, "requester_revoked")
    assert caller.request_id != "not-a-canonical-uuid"
    assert leaves(world, before, before + 1)[0]["request_id"] == caller.request_id
    assert caller.client_request_id is None


@pytest.mark.parametrize("who", ["overseer", "prometheus"])
def test_other_roles_are_refused_with_a_leaf(world: World, svc: Any, who: str) -> None:
    before = tree_size(world)
    outcome = decide(svc, world.identities[who], body(world.case()))
    assert_refused_with_leaf(world, outcome, before, "role_forbidden")
    assert leaves(world, before, before + 1)[0]["requester_id"] == who


CASE_CODES = [
    "case_reference_malformed",
    "case_signature_invalid",
    "case_issuer_untrusted",
    "case_algorithm_forbidden",
    "case_audience_mismatch",
    "case_expired",
    "case_not_yet_valid",
]


@pytest.mark.parametrize("expected", CASE_CODES)
def test_case_reference_refusals_carry_a_leaf(world: World, svc: Any, expected: str) -> None:
    before = tree_size(world)
    outcome = decide(svc, agent(world), body(case_tokens(world)[expected]))
    refused = assert_refused_with_leaf(world, outcome, before, expected)
    assert refused.reasons == (expected,)


def test_revoked_case_reference_is_refused_with_a_leaf(world: World, svc: Any) -> None:
    case = world.case()
    with write_transaction(engine_for(world.settings)) as session:
        revoke_case(session, jti_of(case), actor=cli_actor())
    before = tree_size(world)
    assert_refused_with_leaf(world, decide(svc, agent(world), body(case)), before, "case_revoked")


@pytest.mark.parametrize("refusal", POLICY_REFUSALS, ids=[r[1] for r in POLICY_REFUSALS])
def test_policy_refusals_carry_a_leaf(
    world: World, svc: Any, refusal: tuple[str, str, dict[str, Any], dict[str, Any]]
) -> None:
    expected, _label, case_over, body_over = refusal
    payload = body(world.case(**case_over), **body_over)
    before = tree_size(world)
    outcome = decide(svc, agent(world), payload)
    assert_refused_with_leaf(world, outcome, before, expected)
    assert leaves(world, before, before + 1)[0]["request_id"] == payload["request_id"]


def test_incomplete_address_is_a_policy_refusal_not_invalid(world: World, svc: Any) -> None:
    payload = body(world.case())
    del payload["subject"]["last_known_address"]
    before = tree_size(world)
    assert_refused_with_leaf(
        world, decide(svc, agent(world), payload), before, "address_incomplete"
    )


def test_several_problems_answer_the_first_and_carry_all(world: World, svc: Any) -> None:
    payload = body(world.case(proceeding="civil"), reason="immigration enforcement")
    before = tree_size(world)
    refused = assert_refused_with_leaf(
        world, decide(svc, agent(world), payload), before, "proceeding_not_criminal"
    )
    assert "reason_insufficient" in refused.reasons
    assert list(refused.reasons) == leaves(world, before, before + 1)[0]["reason_codes"]


def test_case_quota_is_refused_with_a_leaf_after_the_last_disclosure(
    world: World, svc: Any
) -> None:
    case = world.case(max_disclosures=1)
    assert isinstance(decide(svc, agent(world), body(case)), Disclosed)
    before = tree_size(world)
    outcome = decide(svc, agent(world), body(case))
    assert_refused_with_leaf(world, outcome, before, "case_quota_exhausted")


# -- 409 replay, 404 no match: one leaf ---------------------------------------------------


def test_replayed_request_id_is_409_with_a_leaf(world: World, svc: Any) -> None:
    payload = body(world.case())
    assert isinstance(decide(svc, agent(world), payload), Disclosed)
    before = tree_size(world)
    outcome = decide(svc, agent(world), payload)
    assert_refused_with_leaf(world, outcome, before, "request_replayed", status=409)


def test_replayed_request_id_after_a_no_match_is_409(world: World, svc: Any) -> None:
    payload = body(world.case(), UNKNOWN)
    assert isinstance(decide(svc, agent(world), payload), NoMatch)
    before = tree_size(world)
    outcome = decide(svc, agent(world), payload)
    assert_refused_with_leaf(world, outcome, before, "request_replayed", status=409)


@pytest.mark.parametrize(
    ("label", "person", "periods"),
    [
        ("unknown tin", UNKNOWN, ["2023", "2024"]),
        ("name mismatch", {"tin": JANE["tin"], "name": "JANE X DOE"}, ["2023", "2024"]),
        ("ambiguous", AMBIGUOUS, ["2023", "2024"]),
        ("no record in period", JOHN, ["2023"]),
    ],
)
def test_no_unique_match_carries_its_leaf(
    world: World, svc: Any, label: str, person: dict[str, str], periods: list[str]
) -> None:
    before = tree_size(world)
    outcome = decide(svc, agent(world), body(world.case(), person, tax_periods=periods))
    assert isinstance(outcome, NoMatch), (label, outcome)
    assert outcome.error.code == "no_unique_match"
    assert outcome.error.status == 404
    assert outcome.leaf.index == before
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "no_match"
    assert leaf["reason_codes"] == []


# -- no leaf: unregistered, 422, 429, 503 -------------------------------------------------


def test_unregistered_certificate_is_refused_without_a_leaf(world: World, svc: Any) -> None:
    ident = world.identity("agent-unregistered", register=False)
    before = tree_size(world)
    outcome = decide(svc, ident, body(world.case()))
    refused = assert_refused_without_leaf(world, outcome, before, "requester_unknown", 403)
    assert refused.caller.requester is None


def test_no_certificate_is_refused_without_a_leaf(world: World, svc: Any) -> None:
    before = tree_size(world)
    payload = json.dumps(body(world.case())).encode()
    outcome = disclose(svc, None, payload, Caller(request_id=new_server_id()))
    assert_refused_without_leaf(world, outcome, before, "requester_unknown", 403)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"request_id": "a", "request_id": "b"}',
        json.dumps({**body("x"), "extra": 1}).encode(),
        json.dumps(body("x", request_id="NOT-A-UUID")).encode(),
    ],
    ids=["not json", "duplicate member", "unknown member", "request_id form"],
)
def test_invalid_bodies_are_422_without_a_leaf(world: World, svc: Any, raw: bytes) -> None:
    before = tree_size(world)
    outcome = decide(svc, agent(world), raw)
    refused = assert_refused_without_leaf(world, outcome, before, "request_invalid", 422)
    assert refused.caller.requester is not None  # who asked is known: the agency label


def test_rate_limited_is_429_without_a_leaf(world: World) -> None:
    limited = service(world, rate_limit=1)
    try:
        assert isinstance(decide(limited, agent(world), body(world.case())), Disclosed)
        before = tree_size(world)
        outcome = decide(limited, agent(world), body(world.case()))
        refused = assert_refused_without_leaf(world, outcome, before, "rate_limited", 429)
        assert refused.caller.requester is not None
    finally:
        limited.close()


class _PolicyDown:
    policy_version = "test"

    def decide(self, _input: dict[str, Any]) -> Any:
        raise PolicyUnavailable("policy engine unreachable")


def test_policy_unavailable_is_503_without_a_leaf(world: World, svc: Any) -> None:
    svc._policy_engine = _PolicyDown()
    before = tree_size(world)
    outcome = decide(svc, agent(world), body(world.case()))
    assert isinstance(outcome, Unavailable), outcome
    assert (outcome.code, outcome.error.status) == ("policy_unavailable", 503)
    assert tree_size(world) == before


def test_audit_unavailable_is_503_and_rolls_everything_back(
    world: World, svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise AuditUnavailable("audit log unavailable")

    monkeypatch.setattr(core, "append_leaf", broken)
    case = world.case(max_disclosures=1)
    payload = body(case)
    before = tree_size(world)
    outcome = decide(svc, agent(world), payload)
    assert isinstance(outcome, Unavailable), outcome
    assert outcome.code == "audit_unavailable"
    assert tree_size(world) == before
    monkeypatch.undo()
    # nothing was used: not the quota, not the request_id
    assert isinstance(decide(svc, agent(world), payload), Disclosed)


def test_missing_receipt_key_is_503_before_anything_is_written(
    world: World, svc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Any:
        raise KeyMaterialError("audit signing key missing")

    monkeypatch.setattr(svc.keystore, "audit_signing_key", missing)
    before = tree_size(world)
    outcome = decide(svc, agent(world), body(world.case()))
    assert isinstance(outcome, Unavailable), outcome
    assert outcome.code == "keys_unavailable"
    assert tree_size(world) == before
