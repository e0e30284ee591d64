"""Sign a court order with a locally held issuer key (dev/testing stand-in for a court)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from taxaddr.cases import jws
from taxaddr.cases.issue import TOKEN_TYPE, IssuerKeys, issuer_kid
from taxaddr.cases.orders import LIFT, SCOPE_LISTS, STAY
from taxaddr.errors import UsageError


def order_claims(
    *,
    issuer: str,
    kind: str,
    number: str,
    court: str,
    scope: dict[str, list[str]] | None = None,
    lifts: str | None = None,
    now: datetime | None = None,
    nbf: datetime | None = None,
    valid_days: int | None = None,
    jti: str | None = None,
) -> dict[str, Any]:
    """The claim set of a court order (CONTRACT.md "Court orders")."""
    if kind not in {STAY, LIFT}:
        raise UsageError("--kind must be stay or lift")
    if (kind == LIFT) != (lifts is not None):
        raise UsageError("a lift needs --lifts JTI, and only a lift takes it")
    now = now or datetime.now(UTC)
    start = nbf or now
    order: dict[str, Any] = {"kind": kind, "number": number, "court": court}
    if kind == STAY:
        order["scope"] = {k: list((scope or {}).get(k, [])) for k in SCOPE_LISTS}
    else:
        order["lifts"] = lifts
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": "taxaddr",
        "jti": jti or str(uuid.uuid4()),
        "iat": int(now.timestamp()),
        "nbf": int(start.timestamp()),
        "order": order,
    }
    if valid_days is not None:
        claims["exp"] = int((start + timedelta(days=valid_days)).timestamp())
    return claims


def sign_order(keystore: IssuerKeys, keys_dir: Path, claims: dict[str, Any]) -> str:
    """A compact JWS (EdDSA) over ``claims`` by the local key of ``claims["iss"]``."""
    issuer = str(claims["iss"])
    header = {
        "alg": jws.ALG_EDDSA,
        "kid": issuer_kid(keystore, keys_dir, issuer),
        "typ": TOKEN_TYPE,
    }
    return jws.sign_compact(header, claims, keystore.issuer_signing_key(issuer))
