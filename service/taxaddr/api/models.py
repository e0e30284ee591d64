"""Tables of taxaddr.api (on the shared :class:`taxaddr.db.Base`).

``requesters`` maps a client certificate (SHA-256 fingerprint of its DER
encoding) to a registered identity: id, agency and one role. Rows are never
deleted; revocation sets ``revoked_at`` so the audit trail keeps its meaning.

``request_ids`` is the replay guard: one row per (requester, request_id) that
passed the policy, written in the same transaction as the audit leaf.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taxaddr.db import Base

ROLES: tuple[str, ...] = ("requester", "oversight", "monitor", "admin")


class RequesterRow(Base):
    __tablename__ = "requesters"
    __table_args__ = (
        CheckConstraint("role IN ('requester', 'oversight', 'monitor', 'admin')", name="role"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    agency: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsedRequestId(Base):
    __tablename__ = "request_ids"

    requester_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer, nullable=False)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


__all__ = ["ROLES", "RequesterRow", "UsedRequestId"]
