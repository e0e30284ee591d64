"""Tables of taxaddr.audit (on the shared :class:`taxaddr.db.Base`).

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

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taxaddr.db import Base

HEAD_ID = 1


class AuditLeaf(Base):
    __tablename__ = "audit_leaves"
    # One covering index for oversight's per-day aggregations (day range, then
    # group by agency, statute, outcome, reason) instead of one index per column:
    # every index is written on every append, the hot path of each disclosure.
    __table_args__ = (
        Index("ix_audit_leaves_summary", "day", "agency", "statute", "outcome", "reason"),
    )

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
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
