"""Who is calling: verified client certificate -> registered requester.

The TLS layer has already verified the certificate chain against the client CA
(and refused expired or foreign certificates at the handshake). Here the
certificate's SHA-256 fingerprint selects a registered identity. Roles come
only from this registration, never from anything in a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from sqlalchemy.orm import Session

from taxaddr.audit import admin
from taxaddr.audit.leaf import tin_shaped
from taxaddr.crypto import pki
from taxaddr.db.repositories import requesters as requesters_repo
from taxaddr.db.schema import ROLES, RequesterRow
from taxaddr.errors import RequesterRevoked, RequesterUnknown, UsageError

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_AGENCY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}$")


@dataclass(frozen=True)
class Requester:
    """A registered, currently valid identity."""

    id: str
    agency: str
    role: str
    fingerprint: str


@dataclass(frozen=True)
class RequesterRecord:
    """A registration as stored (may be revoked)."""

    id: str
    agency: str
    role: str
    fingerprint: str
    revoked: bool


def lookup_identity(session: Session, cert_der: bytes | None) -> RequesterRecord | None:
    """The registration of a verified peer certificate (revoked or not), or None.

    Read from the database on every request, so a revocation by the CLI takes
    effect on the next request of a running server.
    """
    if not cert_der:
        return None
    fingerprint = pki.fingerprint_der(cert_der)
    # A compiled statement on the driver cursor: it runs on every request.
    row = requesters_repo.by_fingerprint(session, fingerprint)
    if row is None:
        return None
    requester_id, agency, role, revoked_at = row
    return RequesterRecord(
        id=requester_id,
        agency=agency,
        role=role,
        fingerprint=fingerprint,
        revoked=revoked_at is not None,
    )


def identify(session: Session, cert_der: bytes | None) -> Requester:
    """Map a verified peer certificate to a valid requester, or refuse."""
    record = lookup_identity(session, cert_der)
    if record is None:
        raise RequesterUnknown("the client certificate is not registered")
    if record.revoked:
        raise RequesterRevoked("the client identity has been revoked")
    return Requester(record.id, record.agency, record.role, record.fingerprint)


def validate_registration(requester_id: str, agency: str, role: str) -> None:
    if not _ID_RE.fullmatch(requester_id):
        raise UsageError("--id: 1-64 characters: letters, digits, '.', '_' or '-'")
    if not _AGENCY_RE.fullmatch(agency):
        raise UsageError("--agency: 1-64 characters: letters, digits, space, '.', '_', '/' or '-'")
    if role not in ROLES:
        raise UsageError(f"--role: one of {', '.join(ROLES)}")
    # Both go into every audit leaf of the identity, whose guard refuses TIN shapes.
    if tin_shaped(requester_id) or tin_shaped(agency):
        raise UsageError("--id and --agency must not hold nine digits in a row (a TIN's shape)")


def get_record(session: Session, requester_id: str) -> RequesterRecord | None:
    row = requesters_repo.get(session, requester_id)
    if row is None:
        return None
    return RequesterRecord(
        id=row.id,
        agency=row.agency,
        role=row.role,
        fingerprint=row.fingerprint,
        revoked=row.revoked_at is not None,
    )


def add_requester(
    session: Session,
    *,
    requester_id: str,
    agency: str,
    role: str,
    cert: x509.Certificate,
    actor: admin.Actor,
) -> RequesterRecord:
    """Register ``cert`` as ``requester_id`` with its ``requester_added`` leaf; the caller
    commits."""
    validate_registration(requester_id, agency, role)
    fingerprint = pki.fingerprint(cert)
    if requesters_repo.get(session, requester_id) is not None:
        raise UsageError(f"requester {requester_id} is already registered")
    if requesters_repo.id_of_fingerprint(session, fingerprint) is not None:
        raise UsageError("this certificate is already registered to another requester")
    requesters_repo.add(
        session,
        RequesterRow(
            id=requester_id,
            fingerprint=fingerprint,
            agency=agency,
            role=role,
            created_at=datetime.now(UTC),
            revoked_at=None,
        ),
    )
    target = admin.requester_target(requester_id, fingerprint)
    admin.record_change(session, actor, admin.REQUESTER_ADDED, target)
    return RequesterRecord(requester_id, agency, role, fingerprint, revoked=False)


def revoke_requester(session: Session, requester_id: str, *, actor: admin.Actor) -> bool:
    """Revoke with its ``requester_revoked`` leaf; returns False (and appends nothing)
    when it was already revoked. Unknown ids are an error."""
    row = requesters_repo.get(session, requester_id)
    if row is None:
        raise UsageError(f"requester {requester_id} is not registered")
    if row.revoked_at is not None:
        return False
    requesters_repo.set_revoked(session, requester_id, datetime.now(UTC))
    target = admin.requester_target(requester_id, row.fingerprint)
    admin.record_change(session, actor, admin.REQUESTER_REVOKED, target)
    return True


def registered_agencies(session: Session) -> set[str]:
    """Agencies of every registration: the bounded label set for metrics."""
    return requesters_repo.agencies(session)
