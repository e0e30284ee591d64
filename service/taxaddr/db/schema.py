"""The schema: every table of the service on one declarative base (Alembic's target).

The tables sit below every domain package: repositories (:mod:`taxaddr.db.repositories`)
and the compiled statements (:mod:`taxaddr.db.statements`) are built from them, and
``alembic check`` compares them with the migrations. Per aggregate:

**Requesters and the replay guard.**

``requesters`` maps a client certificate (SHA-256 fingerprint of its DER
encoding) to a registered identity: id, agency and one role. Rows are never
deleted; revocation sets ``revoked_at`` so the audit trail keeps its meaning.

``request_ids`` is the replay guard: one row per (requester, request_id) that
passed the policy, written in the same transaction as the audit leaf.

**Case references and their issuers.**

* ``case_issuers`` / ``case_issuer_keys``: the trusted-issuer set. An issuer
  (a court or prosecutor's office) has several public keys selected by ``kid``,
  each with its own validity window, so it can rotate keys. Removal is a
  soft delete (``removed_at``) so the history of who was trusted stays visible.
* ``revoked_case_jtis``: case references revoked by ``jti`` (no reason text,
  which could describe a person).
* ``case_references``: what the service remembers of a verified case
  reference: its ``jti``, the SHA-256 of the token and the case facts needed for
  quotas and reports. Never the raw token, never its subjects.

**Encrypted address records.**

``address_records`` holds one row per (TIN, tax period). Nothing in it is a
plaintext TIN, name, street, city or ZIP:

* ``blind_index`` is HMAC-SHA-256 of the normalized TIN under the blind-index key;
* ``name_ct`` and ``address_ct`` are AES-256-GCM ciphertexts under the record's
  own data key, whose associated data binds the record id, blind index, tax
  period, ``as_of`` and field name (so no column can be swapped or edited
  without decryption failing);
* ``wrapped_key`` is that data key wrapped by KEK version ``kek_version``.

``tax_period`` and ``as_of`` stay plain: neither identifies anyone on its own,
and the importer needs ``as_of`` to keep the newest address without decrypting.

**The audit log.**

* ``audit_leaves`` — one row per leaf: the canonical JSON bytes (the source of
  truth), its RFC 6962 leaf hash and denormalized, indexed copies of the fields
  oversight aggregates on.
* ``audit_nodes`` — the hash of every complete aligned perfect subtree
  ``(level, node_index)`` (level 0 = leaf hashes), written once when it
  completes, so any proof is O(log n) primary-key lookups.
* ``audit_head`` — the single row (``id = 1``) every append locks: tree size and
  the compact range (right edge) from which the next nodes and the root follow.
* ``audit_checkpoints`` — every signed checkpoint ever produced (kept forever).
* ``audit_accounting`` — the envelope-encrypted § 6103(p)(3) accounting record
  of a leaf.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- requesters and the replay guard ---------------------------------------

ROLES: tuple[str, ...] = ("requester", "oversight", "monitor", "admin", "disclosure_officer")


class RequesterRow(Base):
    __tablename__ = "requesters"
    __table_args__ = (
        CheckConstraint(
            "role IN ('requester', 'oversight', 'monitor', 'admin', 'disclosure_officer')",
            name="role",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    agency: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsedRequestId(Base):
    __tablename__ = "request_ids"

    requester_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer, nullable=False)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# --- case references and their issuers -------------------------------------

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


case_issuers: Table = cast(Table, CaseIssuer.__table__)
case_issuer_keys: Table = cast(Table, CaseIssuerKey.__table__)
revoked_case_jtis: Table = cast(Table, RevokedCaseJti.__table__)
case_references: Table = cast(Table, CaseReference.__table__)


# --- encrypted address records ---------------------------------------------

ADDRESS_TABLE = "address_records"


class AddressRecord(Base):
    __tablename__ = ADDRESS_TABLE
    __table_args__ = (UniqueConstraint("blind_index", "tax_period"),)

    # Assigned by the importer (max + 1 under its write lock) so the id is known
    # before sealing; an INTEGER key is SQLite's rowid, so inserts append.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    blind_index: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    tax_period: Mapped[str] = mapped_column(String(4), nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    kek_version: Mapped[int] = mapped_column(Integer, nullable=False)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    address_ct: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


address_records: Table = cast(Table, AddressRecord.__table__)


# --- the audit log ---------------------------------------------------------

HEAD_ID = 1


class AuditLeaf(Base):
    __tablename__ = "audit_leaves"
    # One covering index for oversight's per-day aggregations (day range, then
    # group by agency, statute, outcome, reason) instead of one index per column:
    # every index is written on every append, the hot path of each disclosure.
    __table_args__ = (
        Index("ix_audit_leaves_summary", "day", "agency", "statute", "outcome", "reason"),
        # One taxpayer's accounting (POST /v1/accounting/subject) by keyed pseudonym.
        Index("ix_audit_leaves_subject_ref", "subject_ref"),
    )

    # On SQLite the index is the table's rowid (``INTEGER PRIMARY KEY``, migration
    # 0013): leaves are read by index ranges (verification, proofs, tiles), and a
    # BIGINT key is a separate B-tree, two lookups per leaf instead of one.
    leaf_index: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    time: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)
    agency: Mapped[str] = mapped_column(String(256))
    statute: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    case_jti: Mapped[str | None] = mapped_column(String(256), index=True)
    subject_ref: Mapped[str | None] = mapped_column(String(64))
    leaf_json: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditNode(Base):
    __tablename__ = "audit_nodes"
    # SQLite: the composite primary key is the table itself (no separate rowid tree).
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    # One 32-byte hash per set bit of tree_size, largest subtree first.
    compact_range: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditAccounting(Base):
    __tablename__ = "audit_accounting"

    leaf_index: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("audit_leaves.leaf_index"), primary_key=True, autoincrement=False
    )
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # The disclosure's server id in the clear (a random UUID, no personal data), so its
    # offline proof can be found without decrypting (GET /v1/audit/proof/disclosure/<id>).
    disclosure_id: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)


requesters: Table = cast(Table, RequesterRow.__table__)
request_ids: Table = cast(Table, UsedRequestId.__table__)
audit_leaves: Table = cast(Table, AuditLeaf.__table__)
audit_nodes: Table = cast(Table, AuditNode.__table__)
audit_head: Table = cast(Table, AuditHead.__table__)
audit_checkpoints: Table = cast(Table, AuditCheckpoint.__table__)
audit_accounting: Table = cast(Table, AuditAccounting.__table__)


# --- trust changes -----------------------------------------------------------


class PolicyVersion(Base):
    """When each policy version first decided (its ``policy_changed`` leaf), and the
    data document's criminal allow-list as the service read it then (None when the
    version's data was not the local policy directory's, e.g. an OPA bundle built
    elsewhere)."""

    __tablename__ = "policy_versions"

    version: Mapped[str] = mapped_column(String(256), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_leaf: Mapped[int] = mapped_column(BigInteger)
    criminal_statutes: Mapped[str | None] = mapped_column(Text, nullable=True)


class PendingChange(Base):
    """A dangerous trust change proposed under dual control, applied only when a
    second, different admin approves it within its lifetime."""

    __tablename__ = "pending_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)  # the change as proposed (canonical JSON)
    target: Mapped[str] = mapped_column(String(256))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # pending, applied, expired
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


policy_versions: Table = cast(Table, PolicyVersion.__table__)
pending_changes: Table = cast(Table, PendingChange.__table__)


# --- deployment-wide rate limit ------------------------------------------------


class RateLimitBucket(Base):
    """One requester's token bucket, shared by every replica on this database (PostgreSQL).

    ``key`` is a keyed-free blake2b-128 digest of the limiter key, never the key;
    ``updated_at`` is the database server's clock (epoch seconds), so replicas with
    skewed clocks share one time line; ``granted`` is the last take's answer (the
    atomic upsert's way to return it). SQLite servers keep their buckets in a file.
    """

    __tablename__ = "rate_limit_buckets"

    key: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    granted: Mapped[bool] = mapped_column(Boolean, nullable=False)


rate_limit_buckets: Table = cast(Table, RateLimitBucket.__table__)


# --- witnesses and offline proofs --------------------------------------------------


class AuditCosignature(Base):
    """A witness's cosignature (its note signature line) on the checkpoint of one size."""

    __tablename__ = "audit_cosignatures"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(256), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[int] = mapped_column(BigInteger)  # the cosignature's own timestamp


audit_cosignatures: Table = cast(Table, AuditCosignature.__table__)


# --- personal limits (requester_usage) -------------------------------------------


class RequesterCase(Base):
    """A case reference in force window, once per requester it names, recorded when a
    request under it was allowed (``requester_usage.open_cases``)."""

    __tablename__ = "requester_cases"

    requester_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(JTI_MAX), primary_key=True)
    nbf: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    exp: Mapped[int] = mapped_column(BigInteger)


class RequesterSubject(Base):
    """One disclosure's subject pseudonym and time, per requester
    (``requester_usage.subjects_24h``); written with the disclosure's leaf."""

    __tablename__ = "requester_subjects"
    __table_args__ = (
        Index("ix_requester_subjects_requester_time", "requester_id", "disclosed_at"),
    )

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    requester_id: Mapped[str] = mapped_column(String(64))
    subject_ref: Mapped[str] = mapped_column(String(64))
    disclosed_at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds


requester_cases: Table = cast(Table, RequesterCase.__table__)
requester_subjects: Table = cast(Table, RequesterSubject.__table__)


# --- court orders (stays and lifts) ----------------------------------------------------


class CourtOrder(Base):
    """An applied court order: a stay (in force nbf <= now < exp, until a lift names it)
    or a lift. ``scope`` is the order's scope object as canonical JSON."""

    __tablename__ = "court_orders"

    jti: Mapped[str] = mapped_column(String(JTI_MAX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # stay | lift
    iss: Mapped[str] = mapped_column(String(ISSUER_ID_MAX))
    number: Mapped[str] = mapped_column(String(256))
    court: Mapped[str] = mapped_column(String(256))
    nbf: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    exp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lifts: Mapped[str | None] = mapped_column(String(JTI_MAX), nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(JTI_MAX), nullable=True)
    scope: Mapped[str] = mapped_column(Text)
    token_sha256: Mapped[str] = mapped_column(String(64))
    applied_at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    leaf_index: Mapped[int] = mapped_column(BigInteger)


court_orders: Table = cast(Table, CourtOrder.__table__)
