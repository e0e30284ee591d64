"""Case-reference verification: the happy paths and one named test per refusal."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers, jws
from taxaddr.cases.issue import revoke
from taxaddr.cases.verify import VerifiedCase, verify_case_reference
from taxaddr.config import Settings
from taxaddr.crypto.envelope import subject_ref
from taxaddr.db import write_transaction
from taxaddr.errors import CaseError
from tests.cases.casekit import ISS, KID, NOW, NOW_TS, SUBJECTS, TokenMaker, base_claims, trust

b64 = jws.b64url_encode


def refusal(token: str, session: Session, settings: Settings, **kw: Any) -> str:
    with pytest.raises(CaseError) as info:
        verify_case_reference(token, session=session, settings=settings, now=kw.get("now", NOW))
    return info.value.code


def ok(token: str, session: Session, settings: Settings, **kw: Any) -> VerifiedCase:
    return verify_case_reference(token, session=session, settings=settings, now=kw.get("now", NOW))


def resign(header: dict[str, Any], payload_b64: str, key: Ed25519PrivateKey) -> str:
    signing_input = f"{b64(jws.compact_json(header))}.{payload_b64}"
    return signing_input + "." + b64(key.sign(signing_input.encode()))


# -- happy paths ----------------------------------------------------------------------


def test_valid_eddsa_token_verifies(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make()
    vc = ok(token, session, settings)
    assert (vc.iss, vc.kid, vc.jti) == (ISS, KID, "jti-0001")
    assert vc.subjects == ("123456789", "900701234")
    assert vc.statutes == ("8 U.S.C. 1326",)
    assert vc.tax_periods == ("2024", "2025")
    assert vc.max_disclosures == 5
    assert vc.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert "123456789" not in repr(vc)


def test_es256_happy_path(sqlite_engine: Engine, settings: Settings) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    trust(sqlite_engine, key, kid="p256-key")
    token = TokenMaker(Ed25519PrivateKey.generate()).make(
        header={"alg": "ES256", "kid": "p256-key"}, key=key
    )
    with Session(sqlite_engine) as session:
        vc = ok(token, session, settings)
    assert vc.kid == "p256-key"
    assert vc.number == "1:26-cr-00123"


def test_policy_case_is_the_contract_object(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    pkey = b"k" * 32
    case = ok(tokens.make(), session, settings).policy_case(pkey)
    assert list(case) == [
        "iss", "jti", "iat", "nbf", "exp", "number", "court", "proceeding", "statutes",
        "agency", "requesters", "subject_refs", "tax_periods", "max_disclosures",
    ]  # fmt: skip
    claims = base_claims()
    assert case["subject_refs"] == [subject_ref(pkey, "123456789"), subject_ref(pkey, "900701234")]
    assert case["exp"] == claims["exp"]
    assert case["statutes"] == claims["case"]["statutes"]
    assert case["requesters"] == ["hsi-agent-0042"]
    assert "subjects" not in case
    assert not any(t.replace("-", "") in json.dumps(case) for t in SUBJECTS)


def test_duplicate_subjects_are_normalized_once(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    vc = ok(tokens.case(subjects=["123-45-6789", "123456789"]), session, settings)
    assert vc.subjects == ("123456789",)


def test_key_rotation_two_kids_both_trusted(
    sqlite_engine: Engine, issuer_key: Ed25519PrivateKey, settings: Settings
) -> None:
    new_key = Ed25519PrivateKey.generate()
    trust(sqlite_engine, issuer_key)
    trust(sqlite_engine, new_key, kid="test-court-2027")
    maker = TokenMaker(issuer_key)
    with Session(sqlite_engine) as session:
        ok(maker.make(), session, settings)
        ok(maker.make(header={"alg": "EdDSA", "kid": "test-court-2027"}, key=new_key),
           session, settings)  # fmt: skip
        # the new kid with the old key does not verify
        token = maker.make(header={"alg": "EdDSA", "kid": "test-court-2027"})
        assert refusal(token, session, settings) == "case_signature_invalid"


# -- step 1-2: case_reference_malformed ----------------------------------------------


@pytest.mark.parametrize("segments", [1, 2, 4])
def test_malformed_wrong_segment_count(
    segments: int, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    parts = tokens.make().split(".")
    token = ".".join((parts * 2)[:segments])
    assert refusal(token, session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s + "=",  # padding
        lambda s: s[:-1] + "+",  # standard alphabet, not url-safe
        lambda s: s[:-1] + "*",
        lambda s: s + "A" if len(s) % 4 == 0 else s + "AAA",  # impossible length
    ],
    ids=["padding", "plus", "star", "length"],
)
def test_malformed_bad_base64(
    mangle: Any, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    h, p, s = tokens.make().split(".")
    assert refusal(f"{h}.{p}.{mangle(s)}", session, settings) == "case_reference_malformed"
    assert refusal(f"{h}.{mangle(p)}.{s}", session, settings) == "case_reference_malformed"


def test_malformed_non_canonical_base64(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    h, p, s = tokens.make().split(".")
    # 64 bytes -> 86 chars; the last char carries 4 unused bits. Setting one keeps the
    # decoded bytes but changes the spelling: refused, so no byte change goes unnoticed.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(s[-1])
    twin = s[:-1] + alphabet[last ^ 0b0001]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(s + "==")
    assert refusal(f"{h}.{p}.{twin}", session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", b'"string"', b"\xff\xfe{}", b'{"iat": NaN}', b""],
    ids=["text", "array", "string", "not-utf8", "nan", "empty"],
)
def test_malformed_non_json(
    payload: bytes, tokens: TokenMaker, issuer_key: Ed25519PrivateKey,
    session: Session, settings: Settings,
) -> None:  # fmt: skip
    token = resign(tokens.header(), b64(payload), issuer_key)
    assert refusal(token, session, settings) == "case_reference_malformed"


def test_malformed_header_not_json(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    _, p, s = tokens.make().split(".")
    assert refusal(f"{b64(b'alg')}.{p}.{s}", session, settings) == "case_reference_malformed"


def test_malformed_oversized(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    big = tokens.case(court="X" * 200, statutes=["8 U.S.C. 1326"] * 60)
    assert len(big) < settings.case_max_token_bytes
    ok(big, session, settings)
    huge = tokens.make(padding="x" * settings.case_max_token_bytes)
    assert refusal(huge, session, settings) == "case_reference_malformed"


def test_malformed_non_ascii_token(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    assert refusal(tokens.make() + "é", session, settings) == "case_reference_malformed"


def test_malformed_duplicate_json_keys(
    tokens: TokenMaker, issuer_key: Ed25519PrivateKey, session: Session, settings: Settings
) -> None:
    claims = base_claims()
    body = json.dumps(claims)[:-1] + ', "aud": "taxaddr"}'
    token = resign(tokens.header(), b64(body.encode()), issuer_key)
    assert refusal(token, session, settings) == "case_reference_malformed"
    nested = json.dumps(claims).replace('"court": ', '"court": "X", "court": ', 1)
    token = resign(tokens.header(), b64(nested.encode()), issuer_key)
    assert refusal(token, session, settings) == "case_reference_malformed"
    # and in the header
    header = b'{"alg":"EdDSA","kid":"' + KID.encode() + b'","alg":"EdDSA"}'
    payload = b64(jws.compact_json(claims))
    signing_input = f"{b64(header)}.{payload}"
    token = signing_input + "." + b64(issuer_key.sign(signing_input.encode()))
    assert refusal(token, session, settings) == "case_reference_malformed"


# -- step 3: header allow-list --------------------------------------------------------


def test_algorithm_none(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    payload = b64(jws.compact_json(base_claims()))
    header = b64(jws.compact_json({"alg": "none", "kid": KID}))
    assert refusal(f"{header}.{payload}.", session, settings) == "case_algorithm_forbidden"
    _, _, sig = tokens.make().split(".")
    assert refusal(f"{header}.{payload}.{sig}", session, settings) == "case_algorithm_forbidden"


def test_algorithm_hs256_signed_with_issuer_public_key(
    issuer_key: Ed25519PrivateKey, session: Session, settings: Settings
) -> None:
    # The classic confusion attack: HMAC keyed with the issuer's public key bytes.
    public = issuer_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signing_input = (
        f"{b64(jws.compact_json({'alg': 'HS256', 'kid': KID}))}."
        f"{b64(jws.compact_json(base_claims()))}"
    )
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert refusal(f"{signing_input}.{b64(mac)}", session, settings) == "case_algorithm_forbidden"


def test_algorithm_rs256(session: Session, settings: Settings) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_input = (
        f"{b64(jws.compact_json({'alg': 'RS256', 'kid': KID}))}."
        f"{b64(jws.compact_json(base_claims()))}"
    )
    sig = rsa_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert refusal(f"{signing_input}.{b64(sig)}", session, settings) == "case_algorithm_forbidden"


@pytest.mark.parametrize("alg", ["eddsa", "Ed25519", "ES384", "PS256", "", None, 1])
def test_algorithm_other_values(
    alg: Any, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make(header={"alg": alg, "kid": KID})
    assert refusal(token, session, settings) == "case_algorithm_forbidden"


def test_algorithm_not_the_keys_algorithm(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    # ES256 announced for an Ed25519 key: refused before any signature check.
    token = tokens.make(header={"alg": "ES256", "kid": KID})
    assert refusal(token, session, settings) == "case_algorithm_forbidden"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ("jku", "https://attacker.example/keys.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("x5t", "abc"),
        ("x5t#S256", "abc"),
        ("crit", ["exp"]),
        ("b64", False),
    ],
)
def test_embedded_key_and_crit_headers_forbidden(
    name: str, value: Any, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make(header=tokens.header(**{name: value}))
    assert refusal(token, session, settings) == "case_algorithm_forbidden"


def test_header_outside_allow_list_is_malformed(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make(header=tokens.header(cty="JWT"))
    assert refusal(token, session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    "header",
    [{"alg": "EdDSA"}, {"alg": "EdDSA", "kid": 7}, {"alg": "EdDSA", "kid": ""},
     {"alg": "EdDSA", "kid": KID, "typ": 1}],
    ids=["no-kid", "int-kid", "empty-kid", "int-typ"],
)  # fmt: skip
def test_header_kid_and_typ_types(
    header: dict[str, Any], tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    assert refusal(tokens.make(header=header), session, settings) == "case_reference_malformed"


# -- step 4: case_issuer_untrusted ----------------------------------------------------


def test_untrusted_unknown_iss(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    assert refusal(tokens.make(iss="other-court"), session, settings) == "case_issuer_untrusted"


def test_untrusted_unknown_kid(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    token = tokens.make(header={"alg": "EdDSA", "kid": "no-such-kid"})
    assert refusal(token, session, settings) == "case_issuer_untrusted"


def test_key_belongs_to_its_issuer_only(
    sqlite_engine: Engine, issuer_key: Ed25519PrivateKey, settings: Settings
) -> None:
    # Issuer B trusts a different key under the same kid; A's key cannot speak for B.
    trust(sqlite_engine, issuer_key)
    trust(sqlite_engine, Ed25519PrivateKey.generate(), iss="other-court")
    token = TokenMaker(issuer_key).make(iss="other-court")
    with Session(sqlite_engine) as session:
        assert refusal(token, session, settings) == "case_signature_invalid"


def test_untrusted_missing_iss_is_malformed(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    claims = base_claims()
    del claims["iss"]
    assert refusal(tokens.make(claims=claims), session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    "window",
    [
        {"not_before": NOW + timedelta(seconds=1)},
        {"not_after": NOW},
        {"not_before": NOW - timedelta(days=400), "not_after": NOW - timedelta(days=1)},
    ],
    ids=["not-yet", "ends-now", "ended"],
)
def test_untrusted_key_outside_validity_window(
    window: dict[str, Any], sqlite_engine: Engine, issuer_key: Ed25519PrivateKey,
    settings: Settings,
) -> None:  # fmt: skip
    trust(sqlite_engine, issuer_key, **window)
    with Session(sqlite_engine) as session:
        assert refusal(TokenMaker(issuer_key).make(), session, settings) == "case_issuer_untrusted"


def test_key_inside_validity_window(
    sqlite_engine: Engine, issuer_key: Ed25519PrivateKey, settings: Settings
) -> None:
    trust(sqlite_engine, issuer_key, not_before=NOW, not_after=NOW + timedelta(seconds=1))
    with Session(sqlite_engine) as session:
        ok(TokenMaker(issuer_key).make(), session, settings)


@pytest.mark.parametrize("kid", [KID, None])
def test_untrusted_after_remove(
    kid: str | None, sqlite_engine: Engine, issuer_key: Ed25519PrivateKey, settings: Settings
) -> None:
    trust(sqlite_engine, issuer_key)
    token = TokenMaker(issuer_key).make()
    with write_transaction(sqlite_engine) as s:
        issuers.remove(s, ISS, kid, actor=cli_actor())
    with Session(sqlite_engine) as session:
        assert refusal(token, session, settings) == "case_issuer_untrusted"


# -- step 5: case_signature_invalid ---------------------------------------------------


def test_signature_one_flipped_bit_in_payload(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    h, p, s = tokens.make().split(".")
    raw = bytearray(jws.b64url_decode(p))
    at = raw.index(b"1:26-cr-00123") + 5
    raw[at] ^= 0x01  # "00123" -> "10123": still valid JSON, different case
    flipped = f"{h}.{b64(bytes(raw))}.{s}"
    assert refusal(flipped, session, settings) == "case_signature_invalid"


@pytest.mark.parametrize("bit", [0, 7, 8 * 32, 8 * 63 + 7])
def test_signature_one_flipped_bit_in_signature(
    bit: int, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    h, p, s = tokens.make().split(".")
    sig = bytearray(jws.b64url_decode(s))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert refusal(f"{h}.{p}.{b64(bytes(sig))}", session, settings) == "case_signature_invalid"


def test_signature_wrong_length(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    h, p, s = tokens.make().split(".")
    short = b64(jws.b64url_decode(s)[:63])
    assert refusal(f"{h}.{p}.{short}", session, settings) == "case_signature_invalid"
    assert refusal(f"{h}.{p}.", session, settings) == "case_signature_invalid"


def test_signature_by_another_key(session: Session, settings: Settings) -> None:
    token = TokenMaker(Ed25519PrivateKey.generate()).make()
    assert refusal(token, session, settings) == "case_signature_invalid"


def test_es256_signature_flipped(sqlite_engine: Engine, settings: Settings) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    trust(sqlite_engine, key, kid="p256-key")
    token = TokenMaker(Ed25519PrivateKey.generate()).make(
        header={"alg": "ES256", "kid": "p256-key"}, key=key
    )
    h, p, s = token.split(".")
    sig = bytearray(jws.b64url_decode(s))
    sig[40] ^= 0x10
    with Session(sqlite_engine) as session:
        assert refusal(f"{h}.{p}.{b64(bytes(sig))}", session, settings) == "case_signature_invalid"
        zero = b64(bytes(64))  # r = s = 0 is not a valid ECDSA signature
        assert refusal(f"{h}.{p}.{zero}", session, settings) == "case_signature_invalid"


# -- step 6: claims schema (case_reference_malformed) ---------------------------------

_REQUIRED = ["aud", "jti", "iat", "nbf", "exp", "case"]
_REQUIRED_CASE = [
    "number", "court", "proceeding", "statutes", "agency", "requesters", "subjects",
    "tax_periods", "max_disclosures",
]  # fmt: skip


@pytest.mark.parametrize("claim", _REQUIRED)
def test_claims_missing(
    claim: str, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    claims = base_claims()
    del claims[claim]
    assert refusal(tokens.make(claims=claims), session, settings) == "case_reference_malformed"


@pytest.mark.parametrize("member", _REQUIRED_CASE)
def test_claims_case_member_missing(
    member: str, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    claims = base_claims()
    del claims["case"][member]
    assert refusal(tokens.make(claims=claims), session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iat", "1700000000"), ("nbf", 1.7e9), ("exp", True), ("jti", 17), ("jti", ""),
        ("aud", ["taxaddr"]), ("iss", 5), ("case", "1:26-cr-00123"), ("exp", -1),
    ],
)  # fmt: skip
def test_claims_mistyped(
    claim: str, value: Any, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    token = tokens.make(**{claim: value})
    assert refusal(token, session, settings) == "case_reference_malformed"


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("statutes", "8 U.S.C. 1326"), ("statutes", []), ("statutes", [1326]),
        ("requesters", "hsi-agent-0042"), ("subjects", []), ("subjects", ["12345678"]),
        ("subjects", ["000-12-3456"]), ("subjects", [123456789]), ("tax_periods", ["24"]),
        ("tax_periods", [2024]), ("max_disclosures", 0), ("max_disclosures", "5"),
        ("max_disclosures", 2.0), ("max_disclosures", True), ("number", ""), ("number", "  "),
        ("agency", None), ("surprise", "extra member"),
    ],
)  # fmt: skip
def test_claims_case_member_mistyped(
    member: str, value: Any, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    assert refusal(tokens.case(**{member: value}), session, settings) == "case_reference_malformed"


def test_claims_exp_not_after_nbf(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    token = tokens.make(nbf=NOW_TS, exp=NOW_TS)
    assert refusal(token, session, settings) == "case_reference_malformed"


def test_claims_unknown_top_level_claim_is_ignored(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    ok(tokens.make(sub="ignored"), session, settings)


def test_claims_error_never_echoes_a_tin(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    for subjects in (["666-12-3456"], ["123-45-678X"], ["123-45-6789", 5]):
        with pytest.raises(CaseError) as info:
            ok(tokens.case(subjects=subjects), session, settings)
        assert info.value.code == "case_reference_malformed"
        assert "666" not in str(info.value)
        assert "678X" not in str(info.value)
        assert "6789" not in str(info.value)


# -- step 7: case_audience_mismatch ---------------------------------------------------


@pytest.mark.parametrize("aud", ["other-service", "TAXADDR", "", "taxaddr "])
def test_audience_mismatch(
    aud: str, tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    assert refusal(tokens.make(aud=aud), session, settings) == "case_audience_mismatch"


# -- step 8: time ---------------------------------------------------------------------


def test_expired(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    skew = settings.case_clock_skew_seconds
    token = tokens.make(nbf=NOW_TS - 86400, exp=NOW_TS - skew)
    assert refusal(token, session, settings) == "case_expired"
    # inside the clock-skew allowance it is still accepted
    ok(tokens.make(nbf=NOW_TS - 86400, exp=NOW_TS - skew + 1), session, settings)


def test_not_yet_valid(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    skew = settings.case_clock_skew_seconds
    token = tokens.make(iat=NOW_TS, nbf=NOW_TS + skew + 1)
    assert refusal(token, session, settings) == "case_not_yet_valid"
    ok(tokens.make(iat=NOW_TS, nbf=NOW_TS + skew), session, settings)


def test_not_yet_valid_issued_in_the_future(
    tokens: TokenMaker, session: Session, settings: Settings
) -> None:
    skew = settings.case_clock_skew_seconds
    token = tokens.make(iat=NOW_TS + skew + 1)
    assert refusal(token, session, settings) == "case_not_yet_valid"


def test_lifetime_over_maximum(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    max_seconds = settings.case_max_lifetime_days * 86400
    token = tokens.make(nbf=NOW_TS - 60, exp=NOW_TS - 60 + max_seconds + 1)
    assert refusal(token, session, settings) == "case_expired"
    ok(tokens.make(nbf=NOW_TS - 60, exp=NOW_TS - 60 + max_seconds), session, settings)


def test_lifetime_follows_settings(tokens: TokenMaker, session: Session) -> None:
    short = Settings(env="test", case_max_lifetime_days=7)
    token = tokens.make(nbf=NOW_TS, exp=NOW_TS + 8 * 86400)
    assert refusal(token, session, short) == "case_expired"


def test_default_clock_is_now(tokens: TokenMaker, session: Session, settings: Settings) -> None:
    # No `now`: the real clock decides.
    real = int(time.time())
    fresh = tokens.make(iat=real - 10, nbf=real - 10, exp=real + 3600)
    verify_case_reference(fresh, session=session, settings=settings)
    stale = tokens.make(iat=real - 7200, nbf=real - 7200, exp=real - 3600)
    with pytest.raises(CaseError) as info:
        verify_case_reference(stale, session=session, settings=settings)
    assert info.value.code == "case_expired"


# -- step 9: case_revoked -------------------------------------------------------------


def test_revoked(
    tokens: TokenMaker, sqlite_engine: Engine, session: Session, settings: Settings
) -> None:
    token = tokens.make()
    ok(token, session, settings)
    with write_transaction(sqlite_engine) as s:
        assert revoke(s, "jti-0001", actor=cli_actor()) is True
        assert revoke(s, "jti-0001", actor=cli_actor()) is False
    session.rollback()  # a new transaction sees the revocation, like the next request
    assert refusal(token, session, settings) == "case_revoked"
    ok(tokens.make(jti="jti-0002"), session, settings)


# -- order: the first failing step answers --------------------------------------------


def test_first_failing_step_answers(
    tokens: TokenMaker, sqlite_engine: Engine, session: Session, settings: Settings
) -> None:
    with write_transaction(sqlite_engine) as s:
        revoke(s, "jti-0001", actor=cli_actor())
    session.rollback()
    expired = {"nbf": NOW_TS - 86400, "exp": NOW_TS - 3600}
    assert refusal(tokens.make(**expired), session, settings) == "case_expired"
    assert refusal(tokens.make(aud="x", **expired), session, settings) == "case_audience_mismatch"
    claims = copy.deepcopy(base_claims())
    claims.update(aud="x", **expired)
    claims["case"]["max_disclosures"] = 0
    assert refusal(tokens.make(claims=claims), session, settings) == "case_reference_malformed"
    forged = TokenMaker(Ed25519PrivateKey.generate()).make(claims=claims)
    assert refusal(forged, session, settings) == "case_signature_invalid"
