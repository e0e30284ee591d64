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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from taxaddr import metrics
from taxaddr.audit import merkle
from taxaddr.audit.leaf import LeafInput, build_leaf, canonical
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import AuditUnavailable


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
    driver: audit_repo.Appender | None = None
    try:
        driver = audit_repo.Appender(session)
        row = driver.lock_head()
        if row is None:
            # Only a schema made without the migration lacks the head row.
            driver.insert_head(0, b"")
            row = (0, b"")
        compact = _head_from(row[0], row[1]).compact
        leaf_rows: list[tuple[Any, ...]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        appended: list[AppendedLeaf] = []
        day = driver.day
        for item in leaves:
            index = compact.size
            obj = build_leaf(index, item)
            data = canonical(obj)
            h = merkle.leaf_hash(data)
            leaf_rows.append(_leaf_row(index, obj, data, h, day))
            node_rows.append((0, index, h))
            node_rows.extend(compact.push_subtree(0, h))
            appended.append(AppendedLeaf(index, h, index + 1, obj))
        if not appended:
            return []
        driver.insert_leaves(leaf_rows)
        driver.insert_nodes(node_rows)
        driver.update_head(compact.size, b"".join(compact.hashes()))
    except AuditUnavailable:
        metrics.AUDIT_APPEND_FAILURES.inc()
        raise
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        metrics.AUDIT_APPEND_FAILURES.inc()
        raise AuditUnavailable("audit log append failed") from exc
    except Exception as exc:
        if driver is None or not isinstance(exc, driver.error):
            raise
        metrics.AUDIT_APPEND_FAILURES.inc()
        raise AuditUnavailable("audit log append failed") from exc
    finally:
        if driver is not None:
            driver.close()
    return appended


def _leaf_row(
    index: int, obj: dict[str, Any], data: bytes, h: bytes, day_value: Callable[[date], Any]
) -> tuple[Any, ...]:
    reasons = obj["reason_codes"]
    day = date.fromisoformat(obj["time"][:10])  # the UTC day of an RFC 3339 "Z" time
    return (
        index,
        obj["time"],
        day_value(day),  # as the driver takes a Date (SQLite: ISO text)
        obj["agency"],
        obj["statute"],
        obj["outcome"],
        reasons[0] if reasons else "",
        obj["case_jti"],
        obj["subject_ref"],
        data,
        h,
    )


def read_head(session: Session) -> Head:
    """The committed head as this transaction sees it (no lock)."""
    row = audit_repo.head(session)
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
