"""Trust changes are leaves too: who or what is trusted changes only with its leaf.

Every change of the issuer registry, the requester registry, case revocations, the
KEK, court orders and the policy version appends one leaf with ``outcome`` ``admin``,
the action as its only reason code and one more key, ``target`` (what changed),
in the same transaction as the change itself: the change commits with its leaf or
not at all. The acting identity fills ``requester_id``/``agency``/``role``: the
admin certificate's registered identity over the API, ``cli:<user>@<host>`` with
role ``operator`` from the CLI (:func:`cli_actor`).

Targets name keys and certificates by digest, never by personal data:

* issuer key: ``iss=<issuer> kid=<kid> jkt=<RFC 7638 thumbprint>``
* requester: ``id=<requester id> sha256=<certificate fingerprint>``
* case or order: its jti; KEK: ``kek=v<version>``; policy: the policy version.

A trust change's own ``policy_version`` is the policy in force when it was made: the
version of the latest ``policy_changed`` leaf (``none`` before any decision). The
first decision under a new policy version is preceded, in its own transaction, by
that version's ``policy_changed`` leaf (:func:`note_policy_version`).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr import metrics
from taxaddr.audit.leaf import ADMIN_OUTCOME, LeafInput, new_server_id
from taxaddr.audit.log import AppendedLeaf, append_leaf
from taxaddr.db.repositories import trust as trust_repo
from taxaddr.errors import DatabaseUnavailable

ISSUER_ADDED = "issuer_added"
ISSUER_KEY_REMOVED = "issuer_key_removed"
REQUESTER_ADDED = "requester_added"
REQUESTER_REVOKED = "requester_revoked"
CASE_REVOKED = "case_revoked"
KEK_ROTATED = "kek_rotated"
POLICY_CHANGED = "policy_changed"
ORDER_APPLIED = "order_applied"
# Dual control (TAXADDR_DUAL_CONTROL): a pending change's life is logged too.
CHANGE_PROPOSED = "change_proposed"
CHANGE_APPROVED = "change_approved"
CHANGE_REFUSED = "change_refused"
CHANGE_EXPIRED = "change_expired"

ACTIONS = (
    ISSUER_ADDED,
    ISSUER_KEY_REMOVED,
    REQUESTER_ADDED,
    REQUESTER_REVOKED,
    CASE_REVOKED,
    KEK_ROTATED,
    POLICY_CHANGED,
    ORDER_APPLIED,
    CHANGE_PROPOSED,
    CHANGE_APPROVED,
    CHANGE_REFUSED,
    CHANGE_EXPIRED,
)

CLI_ROLE = "operator"
CLI_AGENCY = "cli"
NO_POLICY_YET = "none"


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a registered admin identity, the CLI's operator, or the
    service itself (:data:`SERVICE`, for ``policy_changed``)."""

    requester_id: str
    agency: str
    role: str


SERVICE = Actor("taxaddr", "taxaddr", "service")


def cli_actor() -> Actor:
    """The operator at this terminal: ``cli:<user>@<host>``, role ``operator``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        user = "unknown"
    return Actor(f"cli:{user}@{socket.gethostname()}", CLI_AGENCY, CLI_ROLE)


def issuer_key_target(iss: str, kid: str, public_jwk_json: str) -> str:
    return f"iss={iss} kid={kid} jkt={jwk_thumbprint(json.loads(public_jwk_json))}"


def requester_target(requester_id: str, fingerprint: str) -> str:
    return f"id={requester_id} sha256={fingerprint}"


def kek_target(version: int) -> str:
    return f"kek=v{version}"


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of a public key:
    the required members only, sorted, no whitespace (section 3)."""
    required = {
        "OKP": ("crv", "kty", "x"),
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
    }.get(jwk.get("kty", ""))
    if required is None:
        raise ValueError("unsupported JWK key type for a thumbprint")
    members = {name: jwk[name] for name in required}
    data = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(data.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def admin_leaf(
    actor: Actor,
    action: str,
    target: str,
    *,
    policy_version: str,
    case_jti: str | None = None,
    case_number_hash: str | None = None,
) -> LeafInput:
    """The leaf of one trust change (validated when it is built into the log)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown trust-change action {action!r}")
    return LeafInput(
        request_id=new_server_id(),
        requester_id=actor.requester_id,
        agency=actor.agency,
        role=actor.role,
        case_jti=case_jti,
        case_number_hash=case_number_hash,
        statute="",
        outcome=ADMIN_OUTCOME,
        reason_codes=(action,),
        subject_ref="",
        policy_version=policy_version,
        target=target,
    )


def record_change(
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    *,
    case_jti: str | None = None,
    case_number_hash: str | None = None,
    policy_version: str | None = None,
) -> AppendedLeaf:
    """Append the change's leaf in the caller's transaction (which makes the change);
    its policy version is the one in force unless given."""
    version = policy_version or trust_repo.latest_policy_version(session) or NO_POLICY_YET
    leaf = admin_leaf(
        actor,
        action,
        target,
        policy_version=version,
        case_jti=case_jti,
        case_number_hash=case_number_hash,
    )
    appended = append_leaf(session, leaf)
    session.info[_LAST_LEAF] = appended
    return appended


_LAST_LEAF = "taxaddr.audit.admin.last_leaf"


def forget_last_leaf(session: Session) -> AppendedLeaf | None:
    """The last trust-change leaf this session appended since the previous call (None:
    none), so a caller can tell whether a change changed anything and cite its leaf."""
    last = session.info.pop(_LAST_LEAF, None)
    return last if isinstance(last, AppendedLeaf) else None


# Versions this process found already recorded, per database: after that the check
# costs nothing. (A version this process records itself is cached the next time it
# finds it recorded, i.e. only once the recording transaction committed.)
_NOTED: dict[str, set[str]] = {}
_NOTED_LOCK = threading.Lock()


def note_policy_version(
    session: Session,
    version: str,
    criminal_statutes: Callable[[str], Collection[str] | None],
) -> AppendedLeaf | None:
    """Before a decision's leaf: if ``version`` never decided before, record it and
    append its ``policy_changed`` leaf (target: the version) in the caller's
    transaction. ``criminal_statutes(version)`` tells the data document's criminal
    allow-list of that version when the service knows it (else None), for the
    oversight view that flags statutes added since the previous version.

    Concurrent first decisions under one version (other threads, replicas) record it
    once: the insert is keyed by the version, and the loser (which waits for the
    winner's commit on PostgreSQL) appends nothing.
    """
    if not version or version == "unknown":
        return None
    database = str(session.get_bind().engine.url)
    with _NOTED_LOCK:
        if version in _NOTED.get(database, ()):
            return None
    statutes = criminal_statutes(version)
    statutes_json = None if statutes is None else json.dumps(sorted(statutes))
    if not trust_repo.add_policy_version(session, version, datetime.now(UTC), statutes_json):
        # Recorded already — but perhaps by this very transaction (a group commit runs
        # several decisions in one): cache it only once another connection sees it.
        if trust_repo.version_committed(session.get_bind().engine, version):
            with _NOTED_LOCK:
                _NOTED.setdefault(database, set()).add(version)
        return None
    appended = record_change(session, SERVICE, POLICY_CHANGED, version, policy_version=version)
    trust_repo.set_first_leaf(session, version, appended.index)
    return appended


# -- reading them back -------------------------------------------------------------------


@dataclass(frozen=True)
class TrustChange:
    """One trust-change leaf as ``audit admin-log``, the dashboard and reports show it."""

    leaf_index: int
    time: str
    action: str
    target: str
    requester_id: str
    agency: str
    role: str
    policy_version: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "time": self.time,
            "action": self.action,
            "target": self.target,
            "requester_id": self.requester_id,
            "agency": self.agency,
            "role": self.role,
            "policy_version": self.policy_version,
        }


def trust_changes(
    session: Session, since: date | None = None, until: date | None = None
) -> list[TrustChange]:
    """Every trust change in the log (UTC days ``[since, until]``), oldest first, read
    from the leaves themselves (what the log's hashes cover)."""
    changes = []
    for data in trust_repo.admin_leaves(session, since, until):
        leaf = json.loads(data)
        changes.append(
            TrustChange(
                leaf_index=int(leaf["index"]),
                time=str(leaf["time"]),
                action=str(leaf["reason_codes"][0]),
                target=str(leaf["target"]),
                requester_id=str(leaf["requester_id"]),
                agency=str(leaf["agency"]),
                role=str(leaf["role"]),
                policy_version=str(leaf["policy_version"]),
            )
        )
    return changes


def list_trust_changes(
    engine: Engine, since: date | None = None, until: date | None = None
) -> list[TrustChange]:
    """``taxaddr audit admin-log``."""
    try:
        with Session(engine) as session:
            return trust_changes(session, since, until)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable("database unavailable (run: taxaddr db upgrade)") from exc


@dataclass(frozen=True)
class PolicyVersionInfo:
    """One policy version as oversight sees it: when it first decided, and which
    statutes its data document added to the criminal allow-list since the version
    before (None when either allow-list is unknown to the service)."""

    version: str
    first_seen: str
    first_leaf: int
    added_statutes: tuple[str, ...] | None
    removed_statutes: tuple[str, ...] | None

    @property
    def flagged(self) -> bool:
        return bool(self.added_statutes)


def policy_history(session: Session) -> list[PolicyVersionInfo]:
    """Every policy version in the order it first decided, with allow-list changes."""
    history: list[PolicyVersionInfo] = []
    previous: set[str] | None = None
    for i, row in enumerate(trust_repo.policy_versions(session)):
        current = None if row.criminal_statutes is None else set(json.loads(row.criminal_statutes))
        added = removed = None
        if i > 0 and current is not None and previous is not None:
            added, removed = tuple(sorted(current - previous)), tuple(sorted(previous - current))
        seen = row.first_seen
        seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
        history.append(
            PolicyVersionInfo(
                version=row.version,
                first_seen=seen.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                first_leaf=int(row.first_leaf),
                added_statutes=added,
                removed_statutes=removed,
            )
        )
        previous = current
    return history


class TrustChangeGauge:
    """``taxaddr_trust_changes{action}``: trust-change leaves in the log, counted
    incrementally (each refresh reads only the leaves appended since the last one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scanned: dict[str, int] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def refresh(self, session: Session, tree_size: int) -> dict[str, int]:
        database = str(session.get_bind().engine.url)
        with self._lock:
            start = self._scanned.get(database, 0)
            if tree_size < start or database not in self._counts:  # new or restored log
                start = 0
                self._counts[database] = dict.fromkeys(ACTIONS, 0)
            counts = self._counts[database]
            for _index, action in trust_repo.admin_actions_from(session, start, tree_size):
                if action in counts:
                    counts[action] += 1
            self._scanned[database] = max(start, tree_size)
            for action, count in counts.items():
                metrics.TRUST_CHANGES.labels(action=action).set(count)
            return dict(counts)


TRUST_CHANGE_GAUGE = TrustChangeGauge()
