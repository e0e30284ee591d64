"""Court orders (stays and lifts): verified exactly as strictly as a case reference.

An order is a compact JWS from a trusted case-reference issuer. It goes through the
same numbered steps as :mod:`taxaddr.cases.verify` (steps 1-5 and 7 are the same
functions, raising the ``order_*`` codes):

1. size       at most ``settings.case_max_token_bytes`` of ASCII
2. parse      three segments, strict base64url, JSON objects without duplicate members
3. header     ``alg`` EdDSA or ES256, ``kid`` a string, ``typ`` optional; key-embedding
              headers and ``crit`` refused
4. key        the trusted key registered for exactly (``iss``, ``kid``), in its window,
              for this ``alg``
5. signature  over the exact bytes received
6. claims     a strict schema: ``order`` = {kind stay|lift, number, court, lifts (lift
              only), scope {agencies, statutes, case_numbers, requesters}}
7. audience   ``aud`` is ``"taxaddr"``
8. time       ``exp`` (optional) not passed (``order_expired``), ``iat`` not in the future
9. replay     applying: the ``jti`` was never applied (``order_replayed``); a lift names
              an applied stay (``order_unknown``)

A stay is in force while nbf <= now < exp (or no exp) and no applied lift names it; it
covers a request when every non-empty scope list holds the request's agency, statute,
case number and requester id. Stays are read from the database on every decision (no
in-process cache), so an order takes effect on every replica's next request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.orm import Session

from taxaddr import metrics
from taxaddr.audit import admin
from taxaddr.audit.leaf import case_number_hash, screen_chosen
from taxaddr.cases.verify import (
    MAX_NUMERIC_DATE,
    StepErrors,
    TokenClaims,
    step1_size,
    step2_parse,
    step3_header_of,
    step4_key,
    step5_signature,
    step7_audience,
)
from taxaddr.config import Settings
from taxaddr.db.repositories import orders as repo
from taxaddr.errors import (
    OrderAlgorithmForbidden,
    OrderAudienceMismatch,
    OrderExpired,
    OrderIssuerUntrusted,
    OrderMalformed,
    OrderReplayed,
    OrderSignatureInvalid,
    OrderUnknown,
)

ORDER_ERRORS = StepErrors(
    malformed=OrderMalformed,
    signature=OrderSignatureInvalid,
    untrusted=OrderIssuerUntrusted,
    algorithm=OrderAlgorithmForbidden,
    audience=OrderAudienceMismatch,
    noun="court order",
)
STAY, LIFT = "stay", "lift"
SCOPE_LISTS = ("agencies", "statutes", "case_numbers", "requesters")

# Printable text with something in it: an order's number, court and scope entries are
# printed in `order list` (tab-separated), the dashboard and the impact list.
_Text = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    ),
]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
_Date = Annotated[int, Field(ge=0, le=MAX_NUMERIC_DATE)]
_List = Annotated[list[_Text], Field(max_length=1000)]


class _Scope(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    agencies: _List = []
    statutes: _List = []
    case_numbers: _List = []
    requesters: _List = []


class _Order(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["stay", "lift"]
    number: _Text
    court: _Text
    lifts: _Id | None = None
    scope: _Scope = _Scope()


class _Claims(TokenClaims):
    exp: _Date | None = None
    order: _Order


@dataclass(frozen=True)
class VerifiedOrder:
    iss: str
    jti: str
    kind: str
    number: str
    court: str
    nbf: int
    exp: int | None
    lifts: str | None
    scope: dict[str, list[str]]
    token_sha256: str


@dataclass(frozen=True)
class Stay:
    """A stay in force, as the policy input's ``orders`` carries it (plus its scope)."""

    jti: str
    number: str
    court: str
    scope: dict[str, list[str]]

    def covers(self, *, agency: str, statute: str, case_number: str, requester_id: str) -> bool:
        """Every non-empty scope list holds the request's value (empty or missing: all)."""
        values = (agency, statute, case_number, requester_id)
        return all(
            not self.scope.get(name) or value in self.scope[name]
            for name, value in zip(SCOPE_LISTS, values, strict=True)
        )

    def policy_input(self) -> dict[str, str]:
        return {"jti": self.jti, "number": self.number, "court": self.court}


def verify_order(
    token: str, *, session: Session, settings: Settings, now: datetime | None = None
) -> VerifiedOrder:
    """Steps 1-8; raise the first failing step's ``order_*`` error."""
    now = datetime.now(UTC) if now is None else now
    now_ts = int(now.timestamp())
    raw = step1_size(token, settings.case_max_token_bytes, ORDER_ERRORS)
    parsed = step2_parse(raw, ORDER_ERRORS)
    alg, kid = step3_header_of(parsed.header_segment, ORDER_ERRORS)
    key = step4_key(session, parsed.payload, alg, kid, now, errs=ORDER_ERRORS)
    step5_signature(alg, key.public_key, parsed, ORDER_ERRORS)
    claims = _step6_claims(parsed.payload)
    step7_audience(claims.aud, ORDER_ERRORS)
    _step8_time(claims, now_ts, settings.case_clock_skew_seconds)
    order = claims.order
    return VerifiedOrder(
        iss=claims.iss,
        jti=claims.jti,
        kind=order.kind,
        number=order.number,
        court=order.court,
        nbf=claims.nbf,
        exp=claims.exp,
        lifts=order.lifts,
        scope={name: list(getattr(order.scope, name)) for name in SCOPE_LISTS},
        token_sha256=hashlib.sha256(raw).hexdigest(),
    )


def _step6_claims(payload: dict[str, Any]) -> _Claims:
    try:
        claims = _Claims.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "claims"
        raise OrderMalformed(f"claim {where}: {first['type']}") from None
    if claims.exp is not None and claims.exp <= claims.nbf:
        raise OrderMalformed("claim exp must be later than nbf")
    # The jti is the order's leaf's target: a TIN-shaped one could never be logged.
    if not screen_chosen(claims.jti, None):
        raise OrderMalformed("claim jti looks like a TIN")
    if claims.order.kind == LIFT and claims.order.lifts is None:
        raise OrderMalformed("a lift must name the stay it lifts (order.lifts)")
    if claims.order.kind == STAY and claims.order.lifts is not None:
        raise OrderMalformed("a stay cannot lift another order (order.lifts)")
    return claims


def _step8_time(claims: _Claims, now_ts: int, skew: int) -> None:
    if claims.exp is not None and now_ts >= claims.exp + skew:
        raise OrderExpired("the court order has expired")
    if claims.iat > now_ts + skew:
        raise OrderMalformed("the court order was issued in the future")


@dataclass(frozen=True)
class AppliedOrder:
    order: VerifiedOrder
    leaf_index: int
    leaf_hash: str
    tree_size: int

    def as_dict(self) -> dict[str, Any]:
        """The contract's 201 answer of ``POST /v1/orders``."""
        o = self.order
        return {
            "jti": o.jti,
            "kind": o.kind,
            "number": o.number,
            "court": o.court,
            "nbf": o.nbf,
            "exp": o.exp,
            "audit": {
                "leaf_index": self.leaf_index,
                "leaf_hash": self.leaf_hash,
                "tree_size": self.tree_size,
            },
        }


def apply_order(
    session: Session,
    token: str,
    *,
    settings: Settings,
    actor: admin.Actor,
    now: datetime | None = None,
) -> AppliedOrder:
    """Verify and apply one order in the caller's write transaction, with its
    ``order_applied`` leaf (step 9: replay and, for a lift, the stay it names)."""
    now = datetime.now(UTC) if now is None else now
    order = verify_order(token, session=session, settings=settings, now=now)
    if repo.exists(session, order.jti):
        raise OrderReplayed("this court order (jti) was already applied")
    if order.kind == LIFT:
        if order.lifts is None or repo.kind_of(session, order.lifts) != STAY:
            raise OrderUnknown("the lift names no applied stay")
        repo.mark_lifted(session, order.lifts, order.jti)
    leaf = admin.record_change(
        session,
        actor,
        admin.ORDER_APPLIED,
        order.jti,
        case_jti=order.jti,
        case_number_hash=case_number_hash(order.number),
    )
    repo.insert_order(
        session,
        {
            "jti": order.jti,
            "kind": order.kind,
            "iss": order.iss,
            "number": order.number,
            "court": order.court,
            "nbf": order.nbf,
            "exp": order.exp,
            "lifts": order.lifts,
            "scope": json.dumps(order.scope, sort_keys=True, separators=(",", ":")),
            "token_sha256": order.token_sha256,
            "applied_at": int(now.timestamp()),
            "leaf_index": leaf.index,
        },
    )
    return AppliedOrder(order, leaf.index, leaf.leaf_hash.hex(), leaf.tree_size)


def stays_in_force(session: Session, now: datetime) -> list[Stay]:
    """Every stay in force at ``now``, read from the database (sets the gauge)."""
    rows = repo.stays_in_force(session, int(now.timestamp()))
    metrics.ORDERS_IN_FORCE.set(len(rows))
    return [Stay(r[0], r[1], r[2], json.loads(r[3])) for r in rows]


def stays_covering(
    session: Session,
    now: datetime,
    *,
    agency: str,
    statute: str,
    case_number: str,
    requester_id: str,
) -> list[Stay]:
    """The stays in force at ``now`` whose scope covers this request."""
    return [
        stay
        for stay in stays_in_force(session, now)
        if stay.covers(
            agency=agency, statute=statute, case_number=case_number, requester_id=requester_id
        )
    ]


def list_orders(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """``taxaddr order list``: every applied order, with whether it is in force now."""
    now_ts = int((now or datetime.now(UTC)).timestamp())
    out = []
    for jti, kind, number, court, nbf, exp, lifts, lifted_by, _scope, leaf_index in repo.all_orders(
        session
    ):
        in_force = (
            kind == STAY and lifted_by is None and nbf <= now_ts and (exp is None or now_ts < exp)
        )
        out.append(
            {
                "jti": jti,
                "kind": kind,
                "number": number,
                "court": court,
                "nbf": int(nbf),
                "exp": None if exp is None else int(exp),
                "lifts": lifts,
                "lifted_by": lifted_by,
                "in_force": in_force,
                "leaf_index": int(leaf_index),
            }
        )
    return out
