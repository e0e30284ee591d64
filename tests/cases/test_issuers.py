"""The trusted-issuer set: JWK intake (public keys only) and add/list/remove."""

from __future__ import annotations

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
from taxaddr.db import write_transaction
from taxaddr.errors import UsageError
from tests.cases.casekit import ISS, KID, NOW, public_jwk


def jwk_bytes(jwk: dict[str, Any]) -> bytes:
    return json.dumps(jwk).encode()


def ed_jwk(**changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = public_jwk(Ed25519PrivateKey.generate(), KID)
    jwk.update(changes)
    return jwk


def test_parse_ed25519_jwk() -> None:
    key = Ed25519PrivateKey.generate()
    parsed = issuers.parse_public_jwk(jwk_bytes(public_jwk(key, KID)))
    assert (parsed.kid, parsed.kty, parsed.crv, parsed.alg) == (KID, "OKP", "Ed25519", "EdDSA")
    assert len(parsed.public_key) == 32
    assert json.loads(parsed.canonical_json)["use"] == "sig"


def test_parse_p256_jwk() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    parsed = issuers.parse_public_jwk(jwk_bytes({**public_jwk(key, "ec-1"), "alg": "ES256"}))
    assert (parsed.alg, len(parsed.public_key)) == ("ES256", 65)


def test_dev_issuer_jwk_from_keys_init_is_accepted(keys_dir: Any) -> None:
    parsed = issuers.parse_public_jwk((keys_dir / "issuers" / "dev-court.jwk").read_bytes())
    assert parsed.kid == "dev-court-2026"


@pytest.mark.parametrize(
    ("jwk", "problem"),
    [
        (ed_jwk(d="AAAA"), "private"),
        ({**public_jwk(ec.generate_private_key(ec.SECP256R1()), "x"), "d": "AA"}, "private"),
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "private"),
        ({k: v for k, v in ed_jwk().items() if k != "kid"}, "kid"),
        (ed_jwk(kid=""), "kid"),
        (ed_jwk(kid="has space"), "kid"),
        (ed_jwk(crv="X25519"), "kty OKP"),
        (ed_jwk(crv="Ed448"), "kty OKP"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "e"}, "kty OKP"),
        ({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "e"}, "kty OKP"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"}, "kty OKP"),
        (ed_jwk(x="AAAA"), "32 bytes"),
        (ed_jwk(x="not base64!"), "base64url"),
        ({k: v for k, v in ed_jwk().items() if k != "x"}, "'x' is missing"),
        (ed_jwk(alg="ES256"), "'alg'"),
        (ed_jwk(use="enc"), "'use'"),
        (ed_jwk(key_ops=["sign"]), "key_ops"),
        ({"kty": "EC", "crv": "P-256", "x": jws.b64url_encode(b"\x01" * 32),
          "y": jws.b64url_encode(b"\x02" * 32), "kid": "e"}, "not a point"),
    ],
)  # fmt: skip
def test_parse_refuses(jwk: dict[str, Any], problem: str) -> None:
    with pytest.raises(UsageError) as info:
        issuers.parse_public_jwk(jwk_bytes(jwk))
    assert problem in info.value.message


@pytest.mark.parametrize(
    "data", [b"[]", b"not json", b'{"kid": "a", "kid": "b"}', b"{" + b" " * 9000 + b"}"]
)
def test_parse_refuses_non_object_duplicates_and_huge(data: bytes) -> None:
    with pytest.raises(UsageError):
        issuers.parse_public_jwk(data)


@pytest.mark.parametrize("iss", ["", "has space", "-leading", "x" * 256, "bad\nline"])
def test_issuer_id_rules(iss: str) -> None:
    with pytest.raises(UsageError):
        issuers.check_issuer_id(iss)


def test_parse_when() -> None:
    assert issuers.parse_when(None, "w") is None
    assert issuers.parse_when("2026-01-02", "w").isoformat() == "2026-01-02T00:00:00+00:00"  # type: ignore[union-attr]
    assert issuers.parse_when("2026-01-02T03:04:05+01:00", "w").hour == 2  # type: ignore[union-attr]
    with pytest.raises(UsageError):
        issuers.parse_when("next tuesday", "w")


def test_add_list_remove_lifecycle(engine: Engine) -> None:
    first = issuers.parse_public_jwk(jwk_bytes(ed_jwk()))
    second = issuers.parse_public_jwk(jwk_bytes(ed_jwk(kid="z2")))
    with write_transaction(engine) as s:
        assert issuers.add_key(s, ISS, first, now=NOW, actor=cli_actor()).created
        assert not issuers.add_key(s, ISS, first, actor=cli_actor()).created  # idempotent
        issuers.add_key(s, ISS, second, not_after=NOW + timedelta(days=30), actor=cli_actor())
    with Session(engine) as s:
        listed = issuers.list_keys(s)
    assert [(k.iss, k.kid, k.active) for k in listed] == [(ISS, KID, True), (ISS, "z2", True)]
    assert listed[1].not_after == NOW + timedelta(days=30)
    assert listed[0].added_at == NOW

    with write_transaction(engine) as s:
        assert issuers.remove(s, ISS, "z2", actor=cli_actor()) == 1
    with Session(engine) as s:
        assert [k.active for k in issuers.list_keys(s)] == [True, False]
    with write_transaction(engine) as s:
        assert issuers.remove(s, ISS, actor=cli_actor()) == 1
        assert issuers.remove(s, ISS, actor=cli_actor()) == 0
    with Session(engine) as s:
        assert [k.active for k in issuers.list_keys(s)] == [False, False]
    # adding a key again re-trusts it and its issuer, and may set a new window
    with write_transaction(engine) as s:
        result = issuers.add_key(s, ISS, first, not_before=NOW, actor=cli_actor())
        assert result.key.not_before == NOW
    with Session(engine) as s:
        assert [k.active for k in issuers.list_keys(s)] == [True, False]


def test_kid_never_names_two_keys(engine: Engine) -> None:
    with write_transaction(engine) as s:
        issuers.add_key(s, ISS, issuers.parse_public_jwk(jwk_bytes(ed_jwk())), actor=cli_actor())
    other = issuers.parse_public_jwk(jwk_bytes(ed_jwk()))
    with pytest.raises(UsageError, match="new kid"), write_transaction(engine) as s:
        issuers.add_key(s, ISS, other, actor=cli_actor())


def test_add_refuses_empty_window(engine: Engine) -> None:
    jwk = issuers.parse_public_jwk(jwk_bytes(ed_jwk()))
    with pytest.raises(UsageError), write_transaction(engine) as s:
        issuers.add_key(s, ISS, jwk, not_before=NOW, not_after=NOW, actor=cli_actor())


def test_remove_unknown(engine: Engine) -> None:
    with pytest.raises(UsageError), write_transaction(engine) as s:
        issuers.remove(s, "nobody", actor=cli_actor())
    with write_transaction(engine) as s:
        issuers.add_key(s, ISS, issuers.parse_public_jwk(jwk_bytes(ed_jwk())), actor=cli_actor())
    with pytest.raises(UsageError), write_transaction(engine) as s:
        issuers.remove(s, ISS, "no-such-kid", actor=cli_actor())
