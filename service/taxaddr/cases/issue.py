"""Operator actions on case references: issue (dev stand-in for a court), revoke, inspect.

``issue`` signs with a locally held issuer key (``KEYS_DIR/issuers/ISS.key``)
under the ``kid`` of its public JWK (``KEYS_DIR/issuers/ISS.jwk``). A real
deployment never holds issuer private keys; courts sign elsewhere and only
their public JWKs are registered with ``taxaddr issuer add``.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.cases import jws
from taxaddr.cases.issuers import check_issuer_id, parse_public_jwk
from taxaddr.cases.usage import usage
from taxaddr.cases.verify import AUDIENCE, VerifiedCase, verify_case_reference
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import insert_ignore, write_transaction
from taxaddr.db.schema import JTI_MAX, RevokedCaseJti
from taxaddr.errors import (
    DatabaseUnavailable,
    ImportRowError,
    KeyMaterialError,
    UsageError,
)
from taxaddr.store.normalize import normalize_tin

TOKEN_TYPE = "JWT"  # noqa: S105 - the JOSE "typ" value, not a secret
JTI_RE = re.compile(rf"[\x21-\x7e]{{1,{JTI_MAX}}}")
MAX_VALID_DAYS = 3650


@dataclass(frozen=True)
class CaseSpec:
    """What an issuer puts into a case reference (CLI ``case issue`` flags)."""

    issuer: str
    number: str
    court: str
    proceeding: str
    statutes: Sequence[str]
    agency: str
    requesters: Sequence[str]
    subjects: Sequence[str]
    tax_periods: Sequence[str]
    max_disclosures: int
    valid_days: int


def build_claims(spec: CaseSpec, *, now: datetime, jti: str | None = None) -> dict[str, Any]:
    """The claim set of a case reference (see docs/cases.md), validated for the issuer."""
    check_issuer_id(spec.issuer)
    for flag, value in (
        ("--case-number", spec.number),
        ("--court", spec.court),
        ("--proceeding", spec.proceeding),
        ("--agency", spec.agency),
    ):
        if not value.strip():
            raise UsageError(f"{flag} must not be empty")
    for flag, values in (
        ("--statute", spec.statutes),
        ("--requester", spec.requesters),
        ("--subject", spec.subjects),
        ("--tax-period", spec.tax_periods),
    ):
        if not values or any(not v.strip() for v in values):
            raise UsageError(f"{flag} is required (one or more non-empty values)")
    for i, tin in enumerate(spec.subjects, start=1):
        try:
            normalize_tin(tin)
        except ImportRowError:
            raise UsageError(f"--subject number {i} is not a valid TIN") from None
    for period in spec.tax_periods:
        if not re.fullmatch(r"[0-9]{4}", period):
            raise UsageError("--tax-period must be YYYY")
    if spec.max_disclosures < 1:
        raise UsageError("--max-disclosures must be at least 1")
    if not 1 <= spec.valid_days <= MAX_VALID_DAYS:
        raise UsageError(f"--valid-days must be between 1 and {MAX_VALID_DAYS}")
    iat = int(now.timestamp())
    return {
        "iss": spec.issuer,
        "aud": AUDIENCE,
        "jti": jti or str(uuid.uuid4()),
        "iat": iat,
        "nbf": iat,
        "exp": iat + spec.valid_days * 86_400,
        "case": {
            "number": spec.number.strip(),
            "court": spec.court.strip(),
            "proceeding": spec.proceeding.strip(),
            "statutes": [s.strip() for s in spec.statutes],
            "agency": spec.agency.strip(),
            "requesters": [r.strip() for r in spec.requesters],
            "subjects": [t.strip() for t in spec.subjects],
            "tax_periods": list(spec.tax_periods),
            "max_disclosures": spec.max_disclosures,
        },
    }


class IssuerKeys(Protocol):
    """The part of a key store that holds local issuer keys."""

    def issuer_signing_key(self, issuer_id: str) -> Ed25519PrivateKey: ...


def issuer_kid(keystore: IssuerKeys, keys_dir: Path, issuer: str) -> str:
    """The kid of a locally held issuer key, from its public JWK next to the private key."""
    check_issuer_id(issuer)
    private = keystore.issuer_signing_key(issuer)
    path = Path(keys_dir) / "issuers" / f"{issuer}.jwk"
    try:
        jwk = parse_public_jwk(path.read_bytes())
    except FileNotFoundError:
        raise KeyMaterialError(f"issuer public JWK missing: {path}") from None
    except UsageError as exc:
        raise KeyMaterialError(f"issuer public JWK unusable: {path}: {exc.message}") from None
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    if jwk.public_key != raw:
        raise KeyMaterialError(f"issuer public JWK does not match its private key: {path}")
    return jwk.kid


def sign_case_reference(
    keystore: IssuerKeys,
    keys_dir: Path,
    spec: CaseSpec,
    *,
    now: datetime | None = None,
    jti: str | None = None,
) -> str:
    """A compact JWS (EdDSA) over the claims of ``spec``, by the local issuer key."""
    now = now or datetime.now(UTC)
    claims = build_claims(spec, now=now, jti=jti)
    kid = issuer_kid(keystore, keys_dir, spec.issuer)
    header = {"alg": jws.ALG_EDDSA, "kid": kid, "typ": TOKEN_TYPE}
    return jws.sign_compact(header, claims, keystore.issuer_signing_key(spec.issuer))


def revoke(session: Session, jti: str, now: datetime | None = None, *, actor: admin.Actor) -> bool:
    """Revoke ``jti`` (idempotent). True if it was not revoked before; only then is a
    ``case_revoked`` leaf appended (in this transaction)."""
    if not JTI_RE.fullmatch(jti):
        raise UsageError(f"JTI must be 1-{JTI_MAX} printable characters without spaces")
    newly = insert_ignore(
        session, RevokedCaseJti, {"jti": jti, "revoked_at": now or datetime.now(UTC)}
    )
    if newly:
        admin.record_change(session, actor, admin.CASE_REVOKED, jti, case_jti=jti)
    return newly


def describe(vc: VerifiedCase, pseudonym_key: bytes, disclosures_used: int) -> dict[str, Any]:
    """What ``case inspect`` prints: the verified claims, subjects only as pseudonyms."""
    case = vc.policy_case(pseudonym_key)
    for claim in ("iss", "jti", "iat", "nbf", "exp"):
        del case[claim]
    case["subject_count"] = len(vc.subjects)
    return {
        "valid": True,
        "kid": vc.kid,
        "iss": vc.iss,
        "aud": AUDIENCE,
        "jti": vc.jti,
        "iat": vc.iat,
        "nbf": vc.nbf,
        "exp": vc.exp,
        "case": case,
        "token_sha256": vc.token_sha256,
        "usage": {"disclosures": disclosures_used},
    }


# -- operator entry points (one per CLI command) -----------------------------------------


def revoke_case(engine: Engine, jti: str, *, actor: admin.Actor) -> bool:
    """``taxaddr case revoke``: True if the jti was newly revoked."""
    try:
        with write_transaction(engine) as session:
            return revoke(session, jti, actor=actor)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc


def inspect_case(
    engine: Engine, keystore: KeyStore, settings: Settings, compact: str
) -> dict[str, Any]:
    """Verify ``compact`` (``-``: read stdin) exactly as the service would; raise its code."""
    token = sys.stdin.read().strip() if compact == "-" else compact
    pseudonym_key = keystore.pseudonym_key()
    try:
        with Session(engine) as session:
            vc = verify_case_reference(token, session=session, settings=settings)
            used = usage(session, vc.jti)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc
    return describe(vc, pseudonym_key, used)
