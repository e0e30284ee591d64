"""The trusted-issuer set: which courts and prosecutor's offices may sign case references.

An issuer has one or more public keys selected by ``kid``, each with an
optional validity window, so it can rotate keys. Keys come in as RFC 7517 public
JWKs: ``OKP``/``Ed25519`` (alg ``EdDSA``) or ``EC``/``P-256`` (alg ``ES256``),
always with a ``kid``. Private JWKs are refused outright.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.cases import jws
from taxaddr.db import write_transaction
from taxaddr.db.repositories import cases
from taxaddr.db.schema import ISSUER_ID_MAX, KID_MAX, CaseIssuer, CaseIssuerKey
from taxaddr.errors import DatabaseUnavailable, UsageError

ISSUER_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:/-]{{0,{ISSUER_ID_MAX - 1}}}")
KID_RE = re.compile(rf"[\x21-\x7e]{{1,{KID_MAX}}}")
# Members that only a private or symmetric JWK carries (RFC 7518 section 6).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_JWK_MAX_BYTES = 8192


@dataclass(frozen=True)
class PublicJwk:
    """A validated public JWK reduced to what verification needs."""

    kid: str
    kty: str
    crv: str
    alg: str
    public_key: bytes
    canonical_json: str


@dataclass(frozen=True)
class IssuerKeyInfo:
    iss: str
    kid: str
    alg: str
    not_before: datetime | None
    not_after: datetime | None
    added_at: datetime
    removed_at: datetime | None
    issuer_removed: bool

    @property
    def active(self) -> bool:
        return self.removed_at is None and not self.issuer_removed


@dataclass(frozen=True)
class AddResult:
    key: IssuerKeyInfo
    created: bool
    retrusted: bool = False  # the key (or its issuer) had been removed and is trusted again


def to_utc(value: datetime) -> datetime:
    """Stored datetimes come back naive from SQLite; they are always UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def check_issuer_id(iss: str) -> str:
    if not isinstance(iss, str) or not ISSUER_ID_RE.fullmatch(iss):
        raise UsageError("issuer id must be 1-255 characters: letters, digits and . _ : / -")
    return iss


def parse_public_jwk(data: bytes) -> PublicJwk:
    """Validate an RFC 7517 public JWK; refuse private keys, other curves and a missing kid."""
    if len(data) > _JWK_MAX_BYTES:
        raise UsageError("JWK file is too large")
    try:
        jwk = jws.strict_json_object(data)
    except jws.JoseFormatError as exc:
        raise UsageError(f"JWK file is not a JSON object ({exc})") from None
    if _PRIVATE_MEMBERS & jwk.keys():
        raise UsageError("refusing a private or symmetric JWK: give the issuer's public key only")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        raise UsageError("JWK needs a 'kid' (1-128 printable characters, no spaces)")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        alg = jws.ALG_EDDSA
        x = _coordinate(jwk, "x", 32)
        public_key = x
        public_members: dict[str, Any] = {"kty": kty, "crv": crv, "x": jwk["x"]}
    elif kty == "EC" and crv == "P-256":
        alg = jws.ALG_ES256
        x, y = _coordinate(jwk, "x", 32), _coordinate(jwk, "y", 32)
        try:
            public_key = jws.p256_point(x, y)
        except ValueError:
            raise UsageError("JWK 'x'/'y' is not a point on P-256") from None
        public_members = {"kty": kty, "crv": crv, "x": jwk["x"], "y": jwk["y"]}
    else:
        raise UsageError("JWK must be kty OKP with crv Ed25519, or kty EC with crv P-256")
    if "alg" in jwk and jwk["alg"] != alg:
        raise UsageError(f"JWK 'alg' must be {alg} for this key type")
    if "use" in jwk and jwk["use"] != "sig":
        raise UsageError("JWK 'use' must be 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UsageError("JWK 'key_ops' must allow 'verify'")
    canonical = {**public_members, "kid": kid, "alg": alg, "use": "sig"}
    return PublicJwk(
        kid=kid,
        kty=kty,
        crv=crv,
        alg=alg,
        public_key=public_key,
        canonical_json=json.dumps(canonical, sort_keys=True, separators=(",", ":")),
    )


def _coordinate(jwk: dict[str, Any], name: str, length: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise UsageError(f"JWK '{name}' is missing")
    try:
        raw = jws.b64url_decode(value)
    except jws.JoseFormatError:
        raise UsageError(f"JWK '{name}' is not strict base64url") from None
    if len(raw) != length:
        raise UsageError(f"JWK '{name}' must encode {length} bytes")
    return raw


def parse_when(value: str | None, what: str) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (UTC if no offset)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{what} must be YYYY-MM-DD or an ISO 8601 date-time") from None
    return as_utc(parsed)


# -- core operations on a session -----------------------------------------------------


def add_key(
    session: Session,
    iss: str,
    jwk: PublicJwk,
    *,
    actor: admin.Actor,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    now: datetime | None = None,
) -> AddResult:
    """Trust ``jwk`` for ``iss``. Idempotent for the same key; a reused kid is refused.

    A new key, a key trusted again and a changed validity window are trust changes:
    each appends one ``issuer_added`` leaf in this transaction; a no-op appends none.
    """
    check_issuer_id(iss)
    now = now or datetime.now(UTC)
    if not_before and not_after and not_after <= not_before:
        raise UsageError("--not-after must be later than --not-before")
    issuer = cases.issuer_for_update(session, iss)
    if issuer is None:
        issuer = cases.add(session, CaseIssuer(id=iss, added_at=now, removed_at=None))
    issuer_was_removed = issuer.removed_at is not None
    if issuer_was_removed:
        issuer.removed_at = None  # trusting a key again re-trusts its issuer
    key = cases.issuer_key_for_update(session, iss, jwk.kid)
    created = key is None
    retrusted = changed = False
    if key is None:
        key = CaseIssuerKey(
            iss=iss,
            kid=jwk.kid,
            alg=jwk.alg,
            kty=jwk.kty,
            crv=jwk.crv,
            public_jwk=jwk.canonical_json,
            public_key=jwk.public_key,
            not_before=not_before,
            not_after=not_after,
            added_at=now,
            removed_at=None,
        )
        cases.add(session, key)
    else:
        if key.public_key != jwk.public_key or key.alg != jwk.alg:
            raise UsageError(
                f"kid {jwk.kid!r} of issuer {iss!r} already names a different key; "
                "give the new key a new kid"
            )
        retrusted = key.removed_at is not None or issuer_was_removed
        key.removed_at = None
        if not_before is not None:
            changed = changed or as_utc(key.not_before) != not_before
            key.not_before = not_before
        if not_after is not None:
            changed = changed or as_utc(key.not_after) != not_after
            key.not_after = not_after
    session.flush()
    if created or retrusted or changed:
        target = admin.issuer_key_target(iss, jwk.kid, jwk.canonical_json)
        admin.record_change(session, actor, admin.ISSUER_ADDED, target)
    return AddResult(key=_info(key, issuer_removed=False), created=created, retrusted=retrusted)


def list_keys(session: Session) -> list[IssuerKeyInfo]:
    """Every issuer key ever registered (removed ones flagged), by issuer then kid."""
    rows = cases.issuer_keys_with_issuer_removal(session)
    return [_info(key, issuer_removed=removed is not None) for key, removed in rows]


def remove(
    session: Session,
    iss: str,
    kid: str | None = None,
    now: datetime | None = None,
    *,
    actor: admin.Actor,
) -> int:
    """Stop trusting one key (``kid``) or the whole issuer; returns keys newly removed.

    Each key newly removed appends one ``issuer_key_removed`` leaf in this transaction.
    """
    now = now or datetime.now(UTC)
    issuer = cases.issuer_for_update(session, check_issuer_id(iss))
    if issuer is None:
        raise UsageError(f"no issuer {iss!r} is registered")
    keys = cases.issuer_keys_for_update(session, iss)
    if kid is not None:
        keys = [k for k in keys if k.kid == kid]
        if not keys:
            raise UsageError(f"issuer {iss!r} has no key with kid {kid!r}")
    elif issuer.removed_at is None:
        issuer.removed_at = now
    removed = 0
    for key in keys:
        if key.removed_at is None:
            key.removed_at = now
            removed += 1
            target = admin.issuer_key_target(iss, key.kid, key.public_jwk)
            admin.record_change(session, actor, admin.ISSUER_KEY_REMOVED, target)
    session.flush()
    return removed


def _info(key: CaseIssuerKey, *, issuer_removed: bool) -> IssuerKeyInfo:
    return IssuerKeyInfo(
        iss=key.iss,
        kid=key.kid,
        alg=key.alg,
        not_before=as_utc(key.not_before),
        not_after=as_utc(key.not_after),
        added_at=to_utc(key.added_at),
        removed_at=as_utc(key.removed_at),
        issuer_removed=issuer_removed,
    )


# -- operator entry points (one per CLI command) -----------------------------------------


def add_from_file(
    engine: Engine,
    iss: str,
    jwk_path: Path,
    not_before: str | None = None,
    not_after: str | None = None,
    *,
    actor: admin.Actor,
) -> AddResult:
    check_issuer_id(iss)
    try:
        data = Path(jwk_path).read_bytes()
    except OSError:
        raise UsageError(f"cannot read JWK file {jwk_path}") from None
    jwk = parse_public_jwk(data)
    nb = parse_when(not_before, "--not-before")
    na = parse_when(not_after, "--not-after")
    try:
        with write_transaction(engine) as session:
            return add_key(session, iss, jwk, actor=actor, not_before=nb, not_after=na)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc


def list_issuer_keys(engine: Engine) -> list[IssuerKeyInfo]:
    """``taxaddr issuer list``."""
    try:
        with Session(engine) as session:
            return list_keys(session)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc
