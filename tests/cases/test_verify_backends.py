"""Steps 4 and 9 read the database through the driver: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers
from taxaddr.cases.issue import revoke
from taxaddr.cases.verify import verify_case_reference
from taxaddr.config import Settings
from taxaddr.db import write_transaction
from taxaddr.errors import CaseError
from tests.cases.casekit import ISS, KID, NOW, TokenMaker, trust


def code(engine: Engine, token: str, settings: Settings) -> str:
    with Session(engine) as session, pytest.raises(CaseError) as info:
        verify_case_reference(token, session=session, settings=settings, now=NOW)
    return info.value.code


def test_verify_lifecycle_on_each_backend(engine: Engine, settings: Settings) -> None:
    key = Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    trust(engine, key, not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=1))
    trust(engine, p256, kid="p256")
    maker = TokenMaker(key)
    token = maker.make()
    es_token = maker.make(header={"alg": "ES256", "kid": "p256"}, key=p256, jti="jti-es")
    with Session(engine) as session:
        vc = verify_case_reference(token, session=session, settings=settings, now=NOW)
        assert (vc.iss, vc.kid, vc.jti) == (ISS, KID, "jti-0001")
        verify_case_reference(es_token, session=session, settings=settings, now=NOW)
    # the key's window is enforced with the stored (timezone-aware) bounds
    with Session(engine) as session, pytest.raises(CaseError) as info:
        verify_case_reference(
            token, session=session, settings=settings, now=NOW + timedelta(days=1)
        )
    assert info.value.code == "case_issuer_untrusted"

    with write_transaction(engine) as s:
        revoke(s, "jti-0001", actor=cli_actor())
    assert code(engine, token, settings) == "case_revoked"
    with write_transaction(engine) as s:
        issuers.remove(s, ISS, KID, actor=cli_actor())
    assert code(engine, token, settings) == "case_issuer_untrusted"
    assert code(engine, maker.make(iss="nobody"), settings) == "case_issuer_untrusted"


def test_jti_reused_with_other_case_facts(engine: Engine, settings: Settings) -> None:
    from taxaddr.cases.usage import record_case

    key = Ed25519PrivateKey.generate()
    trust(engine, key)
    maker = TokenMaker(key)
    with Session(engine) as session:
        vc = verify_case_reference(maker.make(), session=session, settings=settings, now=NOW)
    with write_transaction(engine) as s:
        record_case(s, vc)
    # the same facts re-signed (another token, same jti) still verify
    with Session(engine) as session:
        verify_case_reference(maker.make(iat=vc.iat + 1), session=session, settings=settings,
                              now=NOW)  # fmt: skip
    assert code(engine, maker.case(max_disclosures=500), settings) == "case_reference_malformed"
    assert code(engine, maker.case(agency="CBP"), settings) == "case_reference_malformed"
