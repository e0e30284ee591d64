"""Verify a case reference (compact JWS) the way a careful verifier does: in numbered steps.

1. size       the token is at most ``settings.case_max_token_bytes`` (16 KiB) of ASCII
2. parse      three segments, strict base64url without padding, header and payload
              UTF-8 JSON objects without duplicate member names
3. header     allow-list: ``alg`` is ``EdDSA`` or ``ES256``; ``kid`` a string;
              ``typ`` optional; ``jwk``/``jku``/``x5u``/``x5c``/``x5t``/``crit`` refused
4. key        the trusted key registered for exactly (``iss``, ``kid``), inside its
              validity window, for this ``alg`` (a key only ever vouches for its issuer)
5. signature  over the exact bytes received
6. claims     only now are claims read: a strict schema (types, lengths, TINs)
7. audience   ``aud`` is ``"taxaddr"``
8. time       ``nbf``/``exp``/``iat`` with the clock-skew allowance; lifetime cap
9. revocation the ``jti`` is not revoked (nor reused for other case facts)

Verification stops at the first failing step and raises its
:class:`~taxaddr.errors.CaseError`. Messages never echo token content.

Steps 2, 3, 5 and 6 depend only on the token's bytes (and, for 5, on the key), so a
bounded in-process LRU remembers, by the token's SHA-256, what they established for
tokens that verified. On a hit, steps 1, 4, 7, 8 and 9 still run in full on every
call (size; the key still trusted, in its window and the SAME public key the
signature verified under, else the token is verified from scratch; audience; time;
revocation and first-seen case facts), so a ``case revoke`` or ``issuer remove``
takes effect on the next request exactly as without the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.orm import Session

from taxaddr.cases import jws
from taxaddr.cases.issuers import to_utc
from taxaddr.config import Settings
from taxaddr.crypto.envelope import subject_ref
from taxaddr.db.repositories import cases
from taxaddr.errors import (
    CaseAlgorithmForbidden,
    CaseAudienceMismatch,
    CaseExpired,
    CaseIssuerUntrusted,
    CaseNotYetValid,
    CaseReferenceMalformed,
    CaseRevoked,
    CaseSignatureInvalid,
    ImportRowError,
    TaxaddrError,
)
from taxaddr.store.normalize import normalize_tin

AUDIENCE = "taxaddr"
ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})
# Headers that would let the token choose its own key or processing rules.
FORBIDDEN_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"})
MAX_NUMERIC_DATE = 2**53 - 1


@dataclass(frozen=True)
class StepErrors:
    """The refusal each shared step raises: a case reference's codes, or a court
    order's (:mod:`taxaddr.cases.orders`), so both are verified by the same steps."""

    malformed: type[TaxaddrError]
    signature: type[TaxaddrError]
    untrusted: type[TaxaddrError]
    algorithm: type[TaxaddrError]
    audience: type[TaxaddrError]
    noun: str  # what the messages call the token


CASE_ERRORS = StepErrors(
    malformed=CaseReferenceMalformed,
    signature=CaseSignatureInvalid,
    untrusted=CaseIssuerUntrusted,
    algorithm=CaseAlgorithmForbidden,
    audience=CaseAudienceMismatch,
    noun="case reference",
)

_Text = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"\S")]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"\S")]
_Period = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
_Tin = Annotated[str, StringConstraints(min_length=9, max_length=11)]
_Date = Annotated[int, Field(ge=0, le=MAX_NUMERIC_DATE)]


class _CaseClaims(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    number: _Text
    court: _Text
    proceeding: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"\S")]
    statutes: Annotated[list[_Text], Field(min_length=1, max_length=64)]
    agency: _Id
    requesters: Annotated[list[_Id], Field(min_length=1, max_length=1000)]
    subjects: Annotated[list[_Tin], Field(min_length=1, max_length=1000)]
    tax_periods: Annotated[list[_Period], Field(min_length=1, max_length=100)]
    max_disclosures: Annotated[int, Field(gt=0, le=1_000_000)]


class TokenClaims(BaseModel):
    """The registered claims a case reference and a court order share."""

    # Unknown top-level claims are ignored (RFC 7519 section 4); the ``case`` and
    # ``order`` objects are ours and take no unknown members.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    iss: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    aud: str
    jti: _Id
    iat: _Date
    nbf: _Date


class _Claims(TokenClaims):
    exp: _Date
    case: _CaseClaims


@dataclass(frozen=True)
class VerifiedCase:
    """The facts of a verified case reference. ``subjects`` stay in memory only."""

    iss: str
    kid: str
    jti: str
    token_sha256: str
    number: str
    court: str
    proceeding: str
    statutes: tuple[str, ...]
    agency: str
    requesters: tuple[str, ...]
    tax_periods: tuple[str, ...]
    max_disclosures: int
    iat: int
    nbf: int
    exp: int
    subjects: tuple[str, ...] = field(repr=False)
    # subject_refs by pseudonym key (a verified case is reused across requests)
    _refs: dict[bytes, tuple[str, ...]] = field(
        init=False, default_factory=dict, repr=False, compare=False, hash=False
    )

    def subject_refs(self, pseudonym_key: bytes) -> list[str]:
        refs = self._refs.get(pseudonym_key)
        if refs is None:
            refs = tuple(subject_ref(pseudonym_key, tin) for tin in self.subjects)
            if len(self._refs) >= 4:  # a rotated pseudonym key: keep this bounded
                self._refs.clear()
            self._refs[pseudonym_key] = refs
        return list(refs)

    def policy_case(self, pseudonym_key: bytes) -> dict[str, Any]:
        """The policy input's ``case`` object (CONTRACT.md): subjects as keyed pseudonyms."""
        return {
            "iss": self.iss,
            "jti": self.jti,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "number": self.number,
            "court": self.court,
            "proceeding": self.proceeding,
            "statutes": list(self.statutes),
            "agency": self.agency,
            "requesters": list(self.requesters),
            "subject_refs": self.subject_refs(pseudonym_key),
            "tax_periods": list(self.tax_periods),
            "max_disclosures": self.max_disclosures,
        }


# Steps 4 and 9 read the database in ONE round trip on the session's connection, a
# statement compiled once and run on the driver: through the expression layer it cost
# several times the Ed25519 verify itself. What step 9 needs (is the payload's jti
# revoked; what case facts were first seen under it) is fetched with the key but only
# consulted at step 9, after the signature has proved that jti.
def _key_and_revocation(session: Session, iss: str, kid: str, jti: str) -> tuple[Any, ...] | None:
    return cases.key_and_revocation(session, iss, kid, jti)


@lru_cache(maxsize=256)  # a pure conversion; the same few key windows every request
def _stored_time(value: datetime | str | None) -> datetime | None:
    """A DateTime column read through the driver: SQLite gives its ISO text, PostgreSQL
    a datetime; both are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return to_utc(value)


@dataclass(frozen=True)
class TrustedKey:
    public_key: bytes
    jti_revoked: bool
    # (iss, number, court, agency, max_disclosures) first seen under this jti, if any
    jti_seen_with: tuple[Any, ...] | None
    # disclosures counted under this jti in this transaction's snapshot (0 if unseen)
    disclosures_used: int = 0


@dataclass(frozen=True)
class Parsed:
    header_segment: bytes
    header: Mapping[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True)
class _Verified:
    """What steps 2, 3, 5 and 6 established for one token (by its SHA-256)."""

    alg: str
    kid: str
    public_key: bytes  # the key the signature verified under
    claims: _Claims
    case: VerifiedCase


class _VerifiedTokens:
    """A small, thread-safe LRU of verified tokens; never consulted for steps 1, 4, 7-9."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> _Verified | None:
        with self._lock:
            item = self._items.get(digest)
            if item is not None:
                self._items.move_to_end(digest)
            return item

    def put(self, digest: bytes, item: _Verified) -> None:
        with self._lock:
            self._items[digest] = item
            self._items.move_to_end(digest)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


VERIFIED_TOKENS = _VerifiedTokens(256)


def verify_case_reference(
    token: str, *, session: Session, settings: Settings, now: datetime | None = None
) -> VerifiedCase:
    """Verify ``token`` against the trusted-issuer set; raise the first failing step's error."""
    return verify_case_with_usage(token, session=session, settings=settings, now=now)[0]


def verify_case_with_usage(
    token: str, *, session: Session, settings: Settings, now: datetime | None = None
) -> tuple[VerifiedCase, int]:
    """:func:`verify_case_reference` and the disclosures counted under the token's
    ``jti`` in the session's snapshot (0 if never seen), read by step 4's one statement
    (the decision's policy input needs it; no second query)."""
    now = datetime.now(UTC) if now is None else to_utc(now)
    now_ts = int(now.timestamp())

    raw = step1_size(token, settings.case_max_token_bytes)
    digest = hashlib.sha256(raw).digest()
    known = VERIFIED_TOKENS.get(digest)
    if known is not None:
        claims = known.claims
        key = step4_key(session, {"iss": claims.iss, "jti": claims.jti}, known.alg, known.kid, now)
        if key.public_key == known.public_key:
            # steps 2, 3, 5, 6: the same bytes under the same key give the same answers
            step7_audience(claims.aud)
            _step8_time(claims, now_ts, settings)
            _step9_revocation(key, claims)
            return known.case, key.disclosures_used

    parsed = step2_parse(raw)
    alg, kid = step3_header_of(parsed.header_segment)
    key = step4_key(session, parsed.payload, alg, kid, now)
    step5_signature(alg, key.public_key, parsed)
    claims, subjects = _step6_claims(parsed.payload)
    step7_audience(claims.aud)
    _step8_time(claims, now_ts, settings)
    _step9_revocation(key, claims)

    case = claims.case
    verified = VerifiedCase(
        iss=claims.iss,
        kid=kid,
        jti=claims.jti,
        token_sha256=digest.hex(),
        number=case.number,
        court=case.court,
        proceeding=case.proceeding,
        statutes=tuple(case.statutes),
        agency=case.agency,
        requesters=tuple(case.requesters),
        tax_periods=tuple(case.tax_periods),
        max_disclosures=case.max_disclosures,
        iat=claims.iat,
        nbf=claims.nbf,
        exp=claims.exp,
        subjects=subjects,
    )
    VERIFIED_TOKENS.put(digest, _Verified(alg, kid, key.public_key, claims, verified))
    return verified, key.disclosures_used


def step1_size(token: object, limit: int, errs: StepErrors = CASE_ERRORS) -> bytes:
    if not isinstance(token, str):
        raise errs.malformed(f"{errs.noun} is not a string")
    if len(token) > limit:
        raise errs.malformed(f"{errs.noun} is larger than {limit} bytes")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise errs.malformed(f"{errs.noun} has non-ASCII characters") from None
    return raw


def step2_parse(raw: bytes, errs: StepErrors = CASE_ERRORS) -> Parsed:
    parts = raw.split(b".")
    if len(parts) != 3:
        raise errs.malformed(f"{errs.noun} must have three dot-separated segments")
    header = header_segment(parts[0], errs)
    try:
        payload = jws.strict_json_object(jws.b64url_decode_bytes(parts[1]))
        signature = jws.b64url_decode_bytes(parts[2])
    except jws.JoseFormatError as exc:
        raise errs.malformed(f"{errs.noun} is malformed: {exc}") from None
    return Parsed(parts[0], header, payload, raw[: len(parts[0]) + 1 + len(parts[1])], signature)


# Every token of an issuer key carries the same header segment: its parse (step 2's
# share) and its allow-list check (step 3) are pure functions of its bytes, remembered
# for the last few segments. Failures raise and are never remembered.
@lru_cache(maxsize=64)
def header_segment(segment: bytes, errs: StepErrors = CASE_ERRORS) -> Mapping[str, Any]:
    try:
        header = jws.strict_json_object(jws.b64url_decode_bytes(segment))
    except jws.JoseFormatError as exc:
        raise errs.malformed(f"{errs.noun} is malformed: {exc}") from None
    return MappingProxyType(header)


@lru_cache(maxsize=64)
def step3_header_of(segment: bytes, errs: StepErrors = CASE_ERRORS) -> tuple[str, str]:
    """Step 3 for a header segment that step 2 parsed (see :func:`header_segment`)."""
    return step3_header(header_segment(segment, errs), errs)


def step3_header(header: Mapping[str, Any], errs: StepErrors = CASE_ERRORS) -> tuple[str, str]:
    forbidden = FORBIDDEN_HEADERS & header.keys()
    if forbidden:
        raise errs.algorithm(
            "header parameters that embed or point to keys, or 'crit', are not accepted: "
            + ", ".join(sorted(forbidden))
        )
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in jws.ALLOWED_ALGS:
        raise errs.algorithm("alg must be EdDSA or ES256")
    unknown = header.keys() - ALLOWED_HEADERS
    if unknown:
        raise errs.malformed("header has parameters outside the allow-list alg, kid, typ")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise errs.malformed("header needs a 'kid' string")
    if "typ" in header and not isinstance(header["typ"], str):
        raise errs.malformed("header 'typ' must be a string")
    return alg, kid


def step4_key(
    session: Session,
    payload: dict[str, Any],
    alg: str,
    kid: str,
    now: datetime,
    *,
    errs: StepErrors = CASE_ERRORS,
) -> TrustedKey:
    # The issuer is named by the (not yet verified) payload; the key is looked up under
    # that exact issuer, so a key only ever vouches for tokens claiming its own issuer.
    iss = payload.get("iss")
    if not isinstance(iss, str) or not iss:
        raise errs.malformed("claim 'iss' must be a non-empty string")
    jti = payload.get("jti")
    row = _key_and_revocation(session, iss, kid, jti if isinstance(jti, str) else "")
    if row is None:
        raise errs.untrusted("no trusted key for this issuer and kid")
    key_alg, public_key, not_before, not_after, key_removed, issuer_removed, revoked = row[:7]
    seen = row[7:12] if row[7] is not None else None
    if key_removed is not None or issuer_removed is not None:
        raise errs.untrusted("the issuer or its key is no longer trusted")
    nb, na = _stored_time(not_before), _stored_time(not_after)
    if (nb is not None and now < nb) or (na is not None and now >= na):
        raise errs.untrusted("the issuer key is outside its validity window")
    if key_alg != alg:
        raise errs.algorithm("alg does not match the issuer key's algorithm")
    return TrustedKey(
        public_key=bytes(public_key),
        jti_revoked=bool(revoked),
        jti_seen_with=seen,
        disclosures_used=int(row[12] or 0),
    )


def step5_signature(
    alg: str, public_key: bytes, parsed: Parsed, errs: StepErrors = CASE_ERRORS
) -> None:
    if not jws.signature_valid(alg, public_key, parsed.signing_input, parsed.signature):
        raise errs.signature(f"{errs.noun} signature does not verify")


def _step6_claims(payload: dict[str, Any]) -> tuple[_Claims, tuple[str, ...]]:
    try:
        claims = _Claims.model_validate(payload)
    except ValidationError as exc:
        # Location and kind only: the input values may be TINs.
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "claims"
        raise CaseReferenceMalformed(f"claim {where}: {first['type']}") from None
    if claims.exp <= claims.nbf:
        raise CaseReferenceMalformed("claim exp must be later than nbf")
    subjects: list[str] = []
    for i, tin in enumerate(claims.case.subjects):
        try:
            normalized = normalize_tin(tin)
        except ImportRowError:
            raise CaseReferenceMalformed(f"claim case.subjects.{i}: not a valid TIN") from None
        if normalized not in subjects:
            subjects.append(normalized)
    return claims, tuple(subjects)


def step7_audience(aud: str, errs: StepErrors = CASE_ERRORS) -> None:
    if aud != AUDIENCE:
        raise errs.audience(f"{errs.noun} is not addressed to {AUDIENCE!r}")


def _step8_time(claims: _Claims, now_ts: int, settings: Settings) -> None:
    skew = settings.case_clock_skew_seconds
    if claims.exp - claims.nbf > settings.case_max_lifetime_days * 86_400:
        raise CaseExpired(
            f"case reference is valid for longer than {settings.case_max_lifetime_days} days"
        )
    if now_ts >= claims.exp + skew:
        raise CaseExpired("case reference has expired")
    if now_ts < claims.nbf - skew:
        raise CaseNotYetValid("case reference is not valid yet")
    if claims.iat > now_ts + skew:
        raise CaseNotYetValid("case reference was issued in the future")


def _step9_revocation(key: TrustedKey, claims: _Claims) -> None:
    if key.jti_revoked:
        raise CaseRevoked("case reference has been revoked")
    # A jti names one case reference: re-signing it with other case facts (say, a
    # larger quota) must not reset or raise the quota bound to it.
    case = claims.case
    facts = (claims.iss, case.number, case.court, case.agency, case.max_disclosures)
    if key.jti_seen_with is not None and tuple(key.jti_seen_with) != facts:
        raise CaseReferenceMalformed("this jti was first seen with different case facts")
