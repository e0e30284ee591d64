"""Tables of taxaddr.cases (on the shared :class:`taxaddr.db.Base`).

* ``case_issuers`` / ``case_issuer_keys``: the trusted-issuer set. An issuer
  (a court or prosecutor's office) has several public keys selected by ``kid``,
  each with its own validity window, so it can rotate keys. Removal is a
  soft delete (``removed_at``) so the history of who was trusted stays visible.
* ``revoked_case_jtis``: case references revoked by ``jti`` (no reason text,
  which could describe a person).
* ``case_references``: what the service remembers of a verified case
  reference: its ``jti``, the SHA-256 of the token and the case facts needed for
  quotas and reports. Never the raw token, never its subjects.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taxaddr.db import Base

ISSUER_ID_MAX = 255
KID_MAX = 128
JTI_MAX = 128


class CaseIssuer(Base):
    __tablename__ = "case_issuers"

    id: Mapped[str] = mapped_column(String(ISSUER_ID_MAX), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CaseIssuerKey(Base):
    __tablename__ = "case_issuer_keys"

    iss: Mapped[str] = mapped_column(
        String(ISSUER_ID_MAX), ForeignKey("case_issuers.id"), primary_key=True
    )
    kid: Mapped[str] = mapped_column(String(KID_MAX), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16), nullable=False)
    kty: Mapped[str] = mapped_column(String(8), nullable=False)
    crv: Mapped[str] = mapped_column(String(16), nullable=False)
    # The public JWK as registered (public members only, canonical JSON) and the
    # raw public key bytes derived from it (Ed25519: 32 bytes; P-256: 65-byte
    # uncompressed point), so verification never re-parses JSON.
    public_jwk: Mapped[str] = mapped_column(Text, nullable=False)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(65), nullable=False)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RevokedCaseJti(Base):
    __tablename__ = "revoked_case_jtis"

    jti: Mapped[str] = mapped_column(String(JTI_MAX), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class CaseReference(Base):
    __tablename__ = "case_references"

    jti: Mapped[str] = mapped_column(String(JTI_MAX), primary_key=True)
    iss: Mapped[str] = mapped_column(String(ISSUER_ID_MAX), nullable=False)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    number: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    court: Mapped[str] = mapped_column(String(256), nullable=False)
    agency: Mapped[str] = mapped_column(String(128), nullable=False)
    max_disclosures: Mapped[int] = mapped_column(Integer, nullable=False)
    disclosures_used: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


case_issuers = CaseIssuer.__table__
case_issuer_keys = CaseIssuerKey.__table__
revoked_case_jtis = RevokedCaseJti.__table__
case_references = CaseReference.__table__

__all__ = [
    "CaseIssuer",
    "CaseIssuerKey",
    "CaseReference",
    "RevokedCaseJti",
    "case_issuer_keys",
    "case_issuers",
    "case_references",
    "revoked_case_jtis",
]
