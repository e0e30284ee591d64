"""Helpers for the case-reference tests: fixed clock, a trusted test issuer, a token maker."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers, jws
from taxaddr.db import write_transaction

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
ISS = "test-court"
KID = "test-court-2026"
SUBJECTS = ["123-45-6789", "900-70-1234"]


def public_jwk(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    if isinstance(key, Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": jws.b64url_encode(raw), "kid": kid}
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": jws.b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": jws.b64url_encode(numbers.y.to_bytes(32, "big")),
        "kid": kid,
    }


def base_claims() -> dict[str, Any]:
    return {
        "iss": ISS,
        "aud": "taxaddr",
        "jti": "jti-0001",
        "iat": NOW_TS - 3600,
        "nbf": NOW_TS - 3600,
        "exp": NOW_TS + 30 * 86400,
        "case": {
            "number": "1:26-cr-00123",
            "court": "D.D.C.",
            "proceeding": "criminal",
            "statutes": ["8 U.S.C. 1326"],
            "agency": "ICE-HSI",
            "requesters": ["hsi-agent-0042"],
            "subjects": list(SUBJECTS),
            "tax_periods": ["2024", "2025"],
            "max_disclosures": 5,
        },
    }


@dataclass
class TokenMaker:
    """Signs tokens with the trusted test issuer's key unless told otherwise."""

    key: Ed25519PrivateKey
    claims: dict[str, Any] = field(default_factory=base_claims)

    def header(self, **extra: Any) -> dict[str, Any]:
        return {"alg": "EdDSA", "kid": KID, "typ": "JWT", **extra}

    def make(
        self,
        *,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey | None = None,
        **overrides: Any,
    ) -> str:
        body = copy.deepcopy(self.claims if claims is None else claims)
        body.update(overrides)
        return jws.sign_compact(header or self.header(), body, key or self.key)

    def case(self, **changes: Any) -> str:
        body = copy.deepcopy(self.claims)
        body["case"].update(changes)
        return self.make(claims=body)


def trust(
    engine: Engine,
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    *,
    iss: str = ISS,
    kid: str = KID,
    **window: datetime | None,
) -> None:
    jwk = issuers.parse_public_jwk(jws.compact_json(public_jwk(key, kid)))
    with write_transaction(engine) as session:
        issuers.add_key(session, iss, jwk, now=NOW, **window, actor=cli_actor())
