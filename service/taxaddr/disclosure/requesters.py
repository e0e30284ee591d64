"""Requester management behind `taxaddr requester add/revoke` (thin CLI, thick core).

The caller hands in the database engine and the key store (the CLI takes them from the
process's shared resources); nothing here reaches for them itself.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from taxaddr.audit.admin import Actor
from taxaddr.config import Settings
from taxaddr.crypto import pki
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import write_transaction
from taxaddr.disclosure.identity import (
    RequesterRecord,
    add_requester,
    get_record,
    revoke_requester,
    validate_registration,
)
from taxaddr.errors import KeyMaterialError, UsageError


@dataclass(frozen=True)
class Registration:
    record: RequesterRecord
    already_registered: bool
    files: tuple[Path, ...]


def register_requester(
    settings: Settings,
    engine: Engine,
    keystore: KeyStore,
    *,
    requester_id: str,
    agency: str,
    role: str,
    cert_pem: Path | None = None,
    issue_cert_dir: Path | None = None,
    actor: Actor,
) -> Registration:
    """Register a client identity from an existing certificate or a new dev certificate.

    Re-running with the same id, agency, role and certificate is a no-op (so
    dev scripts can be idempotent); anything else for a taken id is refused.
    """
    if cert_pem is not None and issue_cert_dir is not None:
        raise UsageError("give only one of --cert PEM or --issue-cert OUTDIR")
    validate_registration(requester_id, agency, role)
    with write_transaction(engine) as session:
        existing = get_record(session, requester_id)
    if cert_pem is not None:
        cert = _load_cert(cert_pem)
        if existing is not None and _same(existing, agency, role, pki.fingerprint(cert)):
            return Registration(existing, already_registered=True, files=())
        record = _store(
            engine, requester_id=requester_id, agency=agency, role=role, cert=cert, actor=actor
        )
        return Registration(record, False, ())
    if issue_cert_dir is None:
        raise UsageError("give one of --cert PEM or --issue-cert OUTDIR")
    if settings.env == "prod":
        raise UsageError("--issue-cert makes dev certificates and is refused with TAXADDR_ENV=prod")
    crt_path = issue_cert_dir / f"{requester_id}.crt"
    if existing is not None:
        if crt_path.exists():
            fp = pki.fingerprint(_load_cert(crt_path))
            if _same(existing, agency, role, fp):
                return Registration(existing, already_registered=True, files=(crt_path,))
        raise UsageError(f"requester {requester_id} is already registered")
    ca = keystore.files.client_ca()
    try:
        server_ca_pem = keystore.files.server_ca_path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError("server CA certificate missing (run: taxaddr keys init)") from None
    issued = pki.issue_cert(ca, requester_id, server=False)
    record = _store(
        engine,
        requester_id=requester_id,
        agency=agency,
        role=role,
        cert=issued.cert,
        actor=actor,
    )
    issue_cert_dir.mkdir(parents=True, exist_ok=True)
    key_path = issue_cert_dir / f"{requester_id}.key"
    ca_path = issue_cert_dir / "ca.crt"
    _write_atomic(key_path, issued.key_pem(), 0o600)
    _write_atomic(crt_path, issued.cert_pem(), 0o644)
    _write_atomic(ca_path, server_ca_pem, 0o644)
    return Registration(record, already_registered=False, files=(crt_path, key_path, ca_path))


def revoke(engine: Engine, requester_id: str, *, actor: Actor) -> bool:
    """Revoke a registration; False when it was already revoked."""
    with write_transaction(engine) as session:
        return revoke_requester(session, requester_id, actor=actor)


def _store(
    engine: Engine,
    *,
    requester_id: str,
    agency: str,
    role: str,
    cert: x509.Certificate,
    actor: Actor,
) -> RequesterRecord:
    try:
        with write_transaction(engine) as session:
            return add_requester(
                session,
                requester_id=requester_id,
                agency=agency,
                role=role,
                cert=cert,
                actor=actor,
            )
    except SAIntegrityError:
        msg = f"requester {requester_id} or its certificate is already registered"
        raise UsageError(msg) from None


def _same(record: RequesterRecord, agency: str, role: str, fingerprint: str) -> bool:
    return (
        not record.revoked
        and record.agency == agency
        and record.role == role
        and record.fingerprint == fingerprint
    )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError:
        raise UsageError(f"cannot read certificate file {path}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise UsageError(f"{path} is not a PEM certificate") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
