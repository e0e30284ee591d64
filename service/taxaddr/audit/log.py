"""Appending to the audit log inside the caller's transaction.

Appends are serialized in the database: each one locks the single head row
(``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the caller's
``taxaddr.db.write_transaction`` holds the database write lock from
``BEGIN IMMEDIATE``), so indices are gapless and ordered across threads and
processes. An append writes the leaf, the perfect subtrees it completes
(O(log n), amortized two rows) and the new head; it never commits. Any failure
raises :class:`AuditUnavailable`, which must abort the caller's transaction: no
audit leaf, no disclosure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr import metrics
from taxaddr.audit import merkle
from taxaddr.audit.leaf import LeafInput, build_leaf, canonical, parse_time
from taxaddr.audit.models import HEAD_ID, AuditHead, AuditLeaf, AuditNode
from taxaddr.errors import AuditUnavailable

_LEAVES = cast(Table, AuditLeaf.__table__)
_NODES = cast(Table, AuditNode.__table__)
_HEAD = cast(Table, AuditHead.__table__)


@dataclass(frozen=True)
class AppendedLeaf:
    index: int
    leaf_hash: bytes
    tree_size: int
    leaf: dict[str, Any]


@dataclass(frozen=True)
class Head:
    tree_size: int
    compact: merkle.CompactRange

    @property
    def root_hash(self) -> bytes:
        return self.compact.root()


def append_leaf(session: Session, leaf: LeafInput) -> AppendedLeaf:
    """Append one leaf in the caller's transaction; raises :class:`AuditUnavailable`."""
    return bulk_append(session, [leaf])[0]


def bulk_append(session: Session, leaves: Sequence[LeafInput]) -> list[AppendedLeaf]:
    """Append several leaves under one head lock (imports, tests and benchmarks)."""
    try:
        head = _lock_head(session)
        compact = head.compact
        leaf_rows: list[dict[str, Any]] = []
        node_rows: list[dict[str, Any]] = []
        appended: list[AppendedLeaf] = []
        for item in leaves:
            index = compact.size
            obj = build_leaf(index, item)
            data = canonical(obj)
            h = merkle.leaf_hash(data)
            leaf_rows.append(_leaf_row(index, obj, data, h))
            node_rows.append({"level": 0, "node_index": index, "hash": h})
            for level, node_index, node in compact.push_subtree(0, h):
                node_rows.append({"level": level, "node_index": node_index, "hash": node})
            appended.append(AppendedLeaf(index, h, index + 1, obj))
        if not appended:
            return []
        session.execute(insert(_LEAVES), leaf_rows)
        session.execute(insert(_NODES), node_rows)
        session.execute(
            update(_HEAD)
            .where(_HEAD.c.id == HEAD_ID)
            .values(tree_size=compact.size, compact_range=b"".join(compact.hashes()))
        )
    except AuditUnavailable:
        metrics.AUDIT_APPEND_FAILURES.inc()
        raise
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        metrics.AUDIT_APPEND_FAILURES.inc()
        raise AuditUnavailable("audit log append failed") from exc
    return appended


def _leaf_row(index: int, obj: dict[str, Any], data: bytes, h: bytes) -> dict[str, Any]:
    reasons = obj["reason_codes"]
    return {
        "leaf_index": index,
        "time": obj["time"],
        "day": parse_time(obj["time"]).date(),
        "agency": obj["agency"],
        "statute": obj["statute"],
        "outcome": obj["outcome"],
        "reason": reasons[0] if reasons else "",
        "case_jti": obj["case_jti"],
        "subject_ref": obj["subject_ref"],
        "leaf_json": data,
        "leaf_hash": h,
    }


def _lock_head(session: Session) -> Head:
    row = session.execute(
        select(_HEAD.c.tree_size, _HEAD.c.compact_range)
        .where(_HEAD.c.id == HEAD_ID)
        .with_for_update()
    ).one_or_none()
    if row is None:
        # Only a schema made without the migration lacks the head row.
        session.execute(insert(_HEAD).values(id=HEAD_ID, tree_size=0, compact_range=b""))
        return Head(0, merkle.CompactRange())
    return _head_from(row.tree_size, row.compact_range)


def read_head(session: Session) -> Head:
    """The committed head as this transaction sees it (no lock)."""
    row = session.execute(
        select(_HEAD.c.tree_size, _HEAD.c.compact_range).where(_HEAD.c.id == HEAD_ID)
    ).one_or_none()
    if row is None:
        return Head(0, merkle.CompactRange())
    return _head_from(row.tree_size, row.compact_range)


def _head_from(tree_size: int, blob: bytes) -> Head:
    size = int(tree_size)
    blob = bytes(blob)
    hashes = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
    try:
        compact = merkle.CompactRange(size, hashes)
    except ValueError as exc:
        raise AuditUnavailable("audit log head is corrupt") from exc
    return Head(size, compact)


def publish_tree_size(tree_size: int) -> None:
    """Set the ``taxaddr_audit_tree_size`` gauge; call after the append committed."""
    metrics.AUDIT_TREE_SIZE.set(tree_size)
