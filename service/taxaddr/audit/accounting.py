"""Encrypted § 6103(p)(3) accounting records, one per disclosure leaf.

The record holds what the accounting needs (who, whose, what, when, why) and so
does hold personal data; it is sealed with the store's envelope encryption
(AES-256-GCM under a fresh data key wrapped by the KEK) with associated data
binding it to its leaf index, so a record copied onto another leaf does not
open. The leaf itself only links to it by index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr.crypto import envelope
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import AuditUnavailable, IntegrityError, KeyMaterialError, TaxaddrError

# Bound into every sealed record's associated data: a constant, whatever the table is called.
_AAD_TABLE = "audit_accounting"
_AAD_FIELD = "detail"


def accounting_aad(leaf_index: int) -> bytes:
    return envelope.aad(_AAD_TABLE, str(leaf_index), _AAD_FIELD)


@dataclass(frozen=True)
class PreparedAccounting:
    """A record ready to seal: its plaintext and a fresh data key already wrapped by the
    KEK. Made before the write transaction (the KEK may be an HSM round trip); sealed
    with its leaf index's associated data once the index is known."""

    plaintext: bytes = field(repr=False)
    data_key: bytes = field(repr=False)
    kek_version: int
    wrapped_key: bytes
    disclosure_id: str | None = None  # findable by it (oversight), when the detail has one


def prepare_accounting(keystore: KeyStore, detail: Mapping[str, Any]) -> PreparedAccounting:
    """Encode ``detail`` and wrap a fresh data key (no database, no leaf index needed)."""
    try:
        # Sealed, never hashed: any exact JSON will do, and the standard encoder is
        # ~10x faster than RFC 8785 inside the disclosure's write section.
        plaintext = json.dumps(
            dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        data_key = envelope.new_data_key()
        kek_version, wrapped = keystore.wrap(data_key)
    except (AuditUnavailable, KeyMaterialError):
        raise  # a missing or unusable KEK is 503 keys_unavailable
    except (ValueError, TypeError, TaxaddrError) as exc:
        raise AuditUnavailable("audit accounting record failed") from exc
    disclosure_id = detail.get("disclosure_id")
    return PreparedAccounting(
        plaintext,
        data_key,
        kek_version,
        wrapped,
        disclosure_id if isinstance(disclosure_id, str) else None,
    )


def store_accounting(session: Session, prepared: PreparedAccounting, leaf_index: int) -> None:
    """Seal ``prepared`` for ``leaf_index`` and store it in the caller's transaction."""
    try:
        ciphertext = envelope.seal(
            prepared.data_key, prepared.plaintext, accounting_aad(leaf_index)
        )
        # A compiled statement on the transaction's connection: building the expression
        # per call cost several times the insert itself on the disclosure path.
        audit_repo.insert_accounting(
            session,
            leaf_index,
            prepared.kek_version,
            prepared.wrapped_key,
            ciphertext,
            disclosure_id=prepared.disclosure_id,
        )
    except AuditUnavailable:
        raise
    except (SQLAlchemyError, ValueError, TypeError, TaxaddrError) as exc:
        raise AuditUnavailable("audit accounting record failed") from exc


def record_accounting(
    session: Session, keystore: KeyStore, leaf_index: int, detail: Mapping[str, Any]
) -> None:
    """Seal ``detail`` and store it for ``leaf_index`` in the caller's transaction."""
    store_accounting(session, prepare_accounting(keystore, detail), leaf_index)


def read_accounting(session: Session, keystore: KeyStore, leaf_index: int) -> dict[str, Any]:
    """Decrypt one record (for authorized reports); raises IntegrityError if tampered."""
    row = audit_repo.accounting_record(session, leaf_index)
    if row is None:
        raise IntegrityError(f"no accounting record for leaf {leaf_index}")
    return _open(keystore, leaf_index, row.kek_version, row.wrapped_key, row.ciphertext)


def iter_accounting(
    session: Session, keystore: KeyStore, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Decrypt the records of leaves ``[start, end)`` in index order."""
    for row in audit_repo.accounting_records(session, start, end):
        yield (
            row.leaf_index,
            _open(keystore, row.leaf_index, row.kek_version, row.wrapped_key, row.ciphertext),
        )


def accounting_kek_versions(session: Session) -> set[int]:
    """KEK versions that accounting records are still wrapped under."""
    return audit_repo.accounting_kek_versions(session)


def rewrap_accounting(session: Session, keystore: KeyStore) -> int:
    """Re-wrap every record's data key under the current KEK (KEK rotation).

    Ciphertexts are untouched. Returns the number of records re-wrapped.
    """
    current = keystore.current_kek_version()
    rows = audit_repo.accounting_keys_not_under(session, current)
    for row in rows:
        data_key = keystore.unwrap(row.kek_version, row.wrapped_key)
        version, wrapped = keystore.wrap(data_key)
        audit_repo.set_accounting_key(session, row.leaf_index, version, wrapped)
    return len(rows)


def _open(
    keystore: KeyStore, leaf_index: int, kek_version: int, wrapped: bytes, ciphertext: bytes
) -> dict[str, Any]:
    data_key = keystore.unwrap(kek_version, bytes(wrapped))
    plaintext = envelope.open_sealed(data_key, bytes(ciphertext), accounting_aad(leaf_index))
    value = json.loads(plaintext)
    if not isinstance(value, dict):
        raise IntegrityError(f"accounting record of leaf {leaf_index} is not an object")
    return value
