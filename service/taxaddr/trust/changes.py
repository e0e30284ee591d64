"""Trust changes over the API, and dual control for the dangerous ones.

A change is one of the contract's bodies:

* ``{"action": "issuer_add", "issuer": ID, "jwk": {...}}``
* ``{"action": "issuer_key_remove", "issuer": ID, "kid": KID}``
* ``{"action": "requester_add", "id": ID, "agency": A, "role": R, "certificate": PEM}``

Without dual control a change applies at once. With ``TAXADDR_DUAL_CONTROL=true``
(required in prod) the dangerous ones — adding an issuer key, registering an
``admin`` or ``disclosure_officer``, removing an issuer's last active key — become
pending changes that take effect only when a second, different admin approves them
within :data:`PENDING_LIFETIME`. Every step is a leaf: the proposal
(``change_proposed``), the approval (``change_approved``, in the same transaction
as the change and the change's own leaf), a refusal (``change_refused``) and an
expiry (``change_expired``).

Approving, step by step (one transaction, the pending row locked):
1. the change exists (else ``change_unknown``);
2. it is still pending (else ``change_not_pending``: a concurrent approval won);
3. it has not expired (else it is marked expired with its leaf: ``change_expired``);
4. the approver is not the proposer (``approval_forbidden``);
5. the change applies (its own leaf), then the approval's leaf.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.audit.leaf import new_server_id
from taxaddr.audit.log import AppendedLeaf
from taxaddr.cases import issuers
from taxaddr.config import Settings
from taxaddr.crypto import pki
from taxaddr.db import write_transaction
from taxaddr.db.repositories import cases as cases_repo
from taxaddr.db.repositories import trust as trust_repo
from taxaddr.db.schema import PendingChange
from taxaddr.disclosure.identity import add_requester, validate_registration
from taxaddr.errors import (
    ApprovalForbidden,
    ChangeExpired,
    ChangeNotPending,
    ChangeUnknown,
    DatabaseUnavailable,
    RequestInvalid,
    UsageError,
)

ISSUER_ADD = "issuer_add"
ISSUER_KEY_REMOVE = "issuer_key_remove"
REQUESTER_ADD = "requester_add"
CHANGE_ACTIONS = (ISSUER_ADD, ISSUER_KEY_REMOVE, REQUESTER_ADD)
PENDING_LIFETIME = timedelta(hours=24)
# Roles whose registration is a dangerous change (they read or steer the log).
PRIVILEGED_ROLES = frozenset({"admin", "disclosure_officer"})
API_PATH = "POST /v1/admin/changes"

PENDING, APPLIED, REFUSED, EXPIRED = "pending", "applied", "refused", "expired"


@dataclass(frozen=True)
class Change:
    """A validated change body."""

    action: str
    body: dict[str, Any]

    @property
    def canonical(self) -> str:
        return json.dumps(self.body, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ChangeResult:
    change_id: str
    status: str
    audit: AppendedLeaf | None  # the last leaf this call appended (None: nothing changed)

    def as_dict(self) -> dict[str, Any]:
        audit = None
        if self.audit is not None:
            audit = {
                "leaf_index": self.audit.index,
                "leaf_hash": self.audit.leaf_hash.hex(),
                "tree_size": self.audit.tree_size,
            }
        return {"change_id": self.change_id, "status": self.status, "audit": audit}


# -- parsing -------------------------------------------------------------------------------


def _text(body: dict[str, Any], name: str, limit: int = 256) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RequestInvalid(f"'{name}' must be a non-empty string of at most {limit} characters")
    return value


def parse_change(body: object) -> Change:
    """A change body as the contract gives it; anything else is 422 ``request_invalid``."""
    if not isinstance(body, dict):
        raise RequestInvalid("a change is a JSON object")
    action = body.get("action")
    if action not in CHANGE_ACTIONS:
        raise RequestInvalid(f"'action' must be one of {', '.join(CHANGE_ACTIONS)}")
    fields: dict[str, tuple[str, ...]] = {
        ISSUER_ADD: ("action", "issuer", "jwk"),
        ISSUER_KEY_REMOVE: ("action", "issuer", "kid"),
        REQUESTER_ADD: ("action", "id", "agency", "role", "certificate"),
    }
    if set(body) != set(fields[action]):
        raise RequestInvalid(f"{action} takes exactly: {', '.join(fields[action])}")
    try:
        if action == ISSUER_ADD:
            issuers.check_issuer_id(_text(body, "issuer"))
            if not isinstance(body["jwk"], dict):
                raise RequestInvalid("'jwk' must be a JSON object (the issuer's public JWK)")
            issuers.parse_public_jwk(json.dumps(body["jwk"]).encode())
        elif action == ISSUER_KEY_REMOVE:
            issuers.check_issuer_id(_text(body, "issuer"))
            _text(body, "kid", 128)
        else:
            validate_registration(_text(body, "id", 64), _text(body, "agency", 64), body["role"])
            _certificate(_text(body, "certificate", 16 * 1024))
    except UsageError as exc:  # the registry's own checks, as the API's code
        raise RequestInvalid(exc.message) from None
    return Change(action, dict(body))


def _certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise RequestInvalid("'certificate' is not a PEM certificate") from None


def target_of(change: Change) -> str:
    """What the change's leaves name (see :mod:`taxaddr.audit.admin`)."""
    body = change.body
    if change.action == ISSUER_ADD:
        jwk = issuers.parse_public_jwk(json.dumps(body["jwk"]).encode())
        return admin.issuer_key_target(body["issuer"], jwk.kid, jwk.canonical_json)
    if change.action == ISSUER_KEY_REMOVE:
        return f"iss={body['issuer']} kid={body['kid']}"
    fingerprint = pki.fingerprint(_certificate(body["certificate"]))
    return admin.requester_target(body["id"], fingerprint)


# -- what needs a second admin -------------------------------------------------------------


def needs_second_admin(session: Session, change: Change) -> bool:
    """Adding an issuer key, registering a privileged role, removing an issuer's last
    active key."""
    if change.action == ISSUER_ADD:
        return True
    if change.action == REQUESTER_ADD:
        return change.body["role"] in PRIVILEGED_ROLES
    return removes_last_active_key(session, change.body["issuer"], change.body["kid"])


def removes_last_active_key(session: Session, iss: str, kid: str | None) -> bool:
    """Whether removing ``kid`` (None: the whole issuer) leaves ``iss`` without an active key."""
    active = [
        k.kid for k in cases_repo.issuer_keys_for_update(session, iss) if k.removed_at is None
    ]
    return bool(active) and (kid is None or active == [kid])


def refuse_on_cli(settings: Settings, *, dangerous: bool, what: str) -> None:
    """The CLI cannot make a dangerous change under dual control: it names the API path."""
    if settings.dual_control and dangerous:
        raise UsageError(
            f"{what} needs a second admin under dual control (TAXADDR_DUAL_CONTROL): "
            f"propose it with {API_PATH}"
        )


def remove_issuer_key_cli(
    engine: Engine, settings: Settings, iss: str, kid: str | None, *, actor: admin.Actor
) -> int:
    """``taxaddr issuer remove``: refused under dual control when it would remove the
    issuer's last active key (checked in the same transaction as the removal)."""
    try:
        with write_transaction(engine) as session:
            what = f"removing the last active key of issuer {iss}"
            refuse_on_cli(settings, dangerous=removes_last_active_key(session, iss, kid), what=what)
            return issuers.remove(session, iss, kid, actor=actor)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc


# -- submit, approve, refuse ---------------------------------------------------------------


def submit(
    session: Session,
    settings: Settings,
    actor: admin.Actor,
    change: Change,
    now: datetime | None = None,
) -> ChangeResult:
    """Apply ``change`` at once, or (dual control, dangerous) record it as pending."""
    now = now or datetime.now(UTC)
    change_id = new_server_id()
    if settings.dual_control and needs_second_admin(session, change):
        target = target_of(change)
        trust_repo.add_pending(
            session,
            PendingChange(
                id=change_id,
                action=change.action,
                body=change.canonical,
                target=target,
                proposed_by=actor.requester_id,
                proposed_at=now,
                expires_at=now + PENDING_LIFETIME,
                status=PENDING,
            ),
        )
        leaf = admin.record_change(
            session, actor, admin.CHANGE_PROPOSED, _change_target(change_id, change.action, target)
        )
        return ChangeResult(change_id, PENDING, leaf)
    return ChangeResult(change_id, APPLIED, apply(session, actor, change))


def approve(
    session: Session, actor: admin.Actor, change_id: str, now: datetime | None = None
) -> ChangeResult:
    """Apply a pending change proposed by another admin (steps in the module docstring).

    Run :func:`expire_due` in a transaction of its own first, so that an expiry is
    committed (with its leaf) even though this approval is refused.
    """
    now = now or datetime.now(UTC)
    pending = _pending(session, change_id)  # 1, 2
    if now >= issuers.to_utc(pending.expires_at):  # 3
        raise ChangeExpired("the change expired before a second admin approved it")
    if pending.proposed_by == actor.requester_id:  # 4
        raise ApprovalForbidden("the proposer of a change cannot approve it: a second admin must")
    change = parse_change(json.loads(pending.body))
    apply(session, actor, change)  # 5
    if not trust_repo.decide(session, change_id, APPLIED, actor.requester_id, now):
        raise ChangeNotPending("the change is no longer pending")
    target = _change_target(change_id, change.action, pending.target)
    leaf = admin.record_change(session, actor, admin.CHANGE_APPROVED, target)
    return ChangeResult(change_id, APPLIED, leaf)


def refuse(
    session: Session, actor: admin.Actor, change_id: str, now: datetime | None = None
) -> ChangeResult:
    """Decline a pending change (any admin, the proposer withdrawing it included)."""
    now = now or datetime.now(UTC)
    pending = _pending(session, change_id)
    if now >= issuers.to_utc(pending.expires_at):
        raise ChangeExpired("the change had already expired")
    if not trust_repo.decide(session, change_id, REFUSED, actor.requester_id, now):
        raise ChangeNotPending("the change is no longer pending")
    leaf = admin.record_change(
        session,
        actor,
        admin.CHANGE_REFUSED,
        _change_target(change_id, pending.action, pending.target),
    )
    return ChangeResult(change_id, REFUSED, leaf)


def expire_due(session: Session, now: datetime | None = None) -> int:
    """Mark every pending change past its lifetime expired, each with its
    ``change_expired`` leaf (made by the service); how many expired."""
    now = now or datetime.now(UTC)
    expired = 0
    for pending in trust_repo.list_pending(session):
        if pending.status != PENDING or now < issuers.to_utc(pending.expires_at):
            continue
        if trust_repo.decide(session, pending.id, EXPIRED, admin.SERVICE.requester_id, now):
            target = _change_target(pending.id, pending.action, pending.target)
            admin.record_change(session, admin.SERVICE, admin.CHANGE_EXPIRED, target)
            expired += 1
    return expired


def list_changes(session: Session) -> list[dict[str, Any]]:
    """Every change proposed under dual control, oldest first (no leaf: a read)."""
    return [
        {
            "change_id": c.id,
            "action": c.action,
            "target": c.target,
            "status": c.status,
            "proposed_by": c.proposed_by,
            "proposed_at": issuers.to_utc(c.proposed_at).isoformat(),
            "expires_at": issuers.to_utc(c.expires_at).isoformat(),
            "decided_by": c.decided_by,
        }
        for c in trust_repo.list_pending(session)
    ]


def apply(session: Session, actor: admin.Actor, change: Change) -> AppendedLeaf | None:
    """Make the change with its own leaf; None when it changed nothing (already so)."""
    admin.forget_last_leaf(session)
    body = change.body
    try:
        if change.action == ISSUER_ADD:
            jwk = issuers.parse_public_jwk(json.dumps(body["jwk"]).encode())
            issuers.add_key(session, body["issuer"], jwk, actor=actor)
        elif change.action == ISSUER_KEY_REMOVE:
            issuers.remove(session, body["issuer"], body["kid"], actor=actor)
        else:
            add_requester(
                session,
                requester_id=body["id"],
                agency=body["agency"],
                role=body["role"],
                cert=_certificate(body["certificate"]),
                actor=actor,
            )
    except UsageError as exc:
        raise RequestInvalid(exc.message) from None
    return admin.forget_last_leaf(session)


def _pending(session: Session, change_id: str) -> PendingChange:
    pending = trust_repo.pending_for_update(session, change_id)
    if pending is None:
        raise ChangeUnknown("no change with that id")
    if pending.status == EXPIRED:
        raise ChangeExpired("the change expired before a second admin approved it")
    if pending.status != PENDING:
        raise ChangeNotPending(f"the change is {pending.status}, not pending")
    return pending


def _change_target(change_id: str, action: str, target: str) -> str:
    return f"change={change_id} {action} {target}"[:256]


# -- the API's entry points ----------------------------------------------------------------


@dataclass(frozen=True)
class TrustChanges:
    """What ``/v1/admin/changes`` does, each call in its own write transaction(s)."""

    write: Callable[[], AbstractContextManager[Session]]
    settings: Settings

    def submit(self, actor: admin.Actor, body: object) -> ChangeResult:
        change = parse_change(body)
        with self.write() as session:
            return submit(session, self.settings, actor, change)

    def approve(self, actor: admin.Actor, change_id: str) -> ChangeResult:
        with self.write() as session:  # an expiry is on record even if this is refused
            expire_due(session)
        with self.write() as session:
            return approve(session, actor, change_id)

    def refuse(self, actor: admin.Actor, change_id: str) -> ChangeResult:
        with self.write() as session:
            expire_due(session)
        with self.write() as session:
            return refuse(session, actor, change_id)

    def list(self) -> list[dict[str, Any]]:
        with self.write() as session:
            expire_due(session)
            return list_changes(session)
