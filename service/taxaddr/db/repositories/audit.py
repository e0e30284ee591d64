"""The audit log: head, append, node and leaf ranges, accounting records."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from taxaddr.db.driver import fetchall, fetchone, statements
from taxaddr.db.schema import (
    HEAD_ID,
    audit_accounting,
    audit_checkpoints,
    audit_head,
    audit_leaves,
)
from taxaddr.db.statements import statements_for

_READ_HEAD = select(audit_head.c.tree_size, audit_head.c.compact_range).where(
    audit_head.c.id == HEAD_ID
)


def head(session: Session) -> Any:
    """``(tree_size, compact_range)`` of the committed head as this transaction sees it
    (no lock), or None."""
    return session.connection().execute(_READ_HEAD).one_or_none()


class Appender:
    """An append's statements on the transaction's own DBAPI cursor.

    Appends sit on the hot path of every disclosure; four statements on the driver
    cursor cost a fraction of the SQL expression layer. Same connection, same
    transaction as the caller. :meth:`lock_head` locks the head row on PostgreSQL; on
    SQLite the caller's ``BEGIN IMMEDIATE`` already serializes writers. Driver errors
    stay the driver's (:attr:`error`); close the cursor with :meth:`close`.
    """

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.sql = statements_for(connection.dialect)
        self.error: type[Exception] = connection.dialect.loaded_dbapi.Error
        self.cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def lock_head(self) -> tuple[Any, ...] | None:
        """``(tree_size, compact_range)`` of the head row, locked for this transaction."""
        self.cursor.execute(self.sql.audit_lock_head, (HEAD_ID,))
        row = self.cursor.fetchone()
        return None if row is None else tuple(row)

    def insert_head(self, tree_size: int, compact_range: bytes) -> None:
        self.cursor.execute(self.sql.audit_insert_head, (HEAD_ID, tree_size, compact_range))

    def day(self, value: date) -> Any:
        """The ``day`` column's value as the driver takes it."""
        return self.sql.date(value)

    def insert_leaves(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows in the order of :data:`taxaddr.db.statements.AUDIT_LEAF_COLUMNS`."""
        self.cursor.executemany(self.sql.audit_insert_leaf, rows)

    def insert_nodes(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        self.cursor.executemany(self.sql.audit_insert_node, rows)

    def update_head(self, tree_size: int, compact_range: bytes) -> None:
        self.cursor.execute(self.sql.audit_update_head, (tree_size, compact_range, HEAD_ID))

    def close(self) -> None:
        self.cursor.close()


def nodes(session: Session, keys: Sequence[tuple[int, int]]) -> list[Any]:
    """``(level, node_index, hash)`` of the stored nodes among ``keys``."""
    sql = statements(session).audit_nodes(len(keys))
    return fetchall(session.connection(), sql, [value for key in keys for value in key])


@contextmanager
def leaf_chunks(session: Session) -> Iterator[Callable[[int, int], list[Any]]]:
    """A reader of ``(leaf_json,)`` rows: ``read(start, count)`` returns up to ``count``
    leaves from index ``start`` in index order, streamed on one DBAPI cursor."""
    connection = session.connection()
    sql = statements_for(connection.dialect).audit_leaf_chunk
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def read(start: int, count: int) -> list[Any]:
        cursor.execute(sql, (start, count))
        return list(cursor.fetchall())

    try:
        yield read
    finally:
        cursor.close()


def leaf_reader_spec(session: Session) -> dict[str, Any] | None:
    """What another process needs to read the same leaves with the bare DBAPI module
    (``module``, ``args``, ``kwargs`` of its ``connect``; ``sql`` of the chunk read,
    parameters ``(start, count)``), or None for an in-memory database. It holds the
    password: hand it over a pipe, never on a command line."""
    connection = session.connection()
    dialect = connection.dialect
    url = connection.engine.url
    if dialect.name == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    args, kwargs = dialect.create_connect_args(url)
    plain = (str, int, float, bool, type(None))
    return {
        "module": dialect.loaded_dbapi.__name__,
        "args": [a for a in args if isinstance(a, plain)],
        # connection options only (psycopg's dialect adds its type adapters: not needed
        # to read bytes)
        "kwargs": {k: v for k, v in kwargs.items() if isinstance(v, plain)},
        "sql": statements_for(dialect).audit_leaf_chunk,
    }


def insert_accounting(
    session: Session,
    leaf_index: int,
    kek_version: int,
    wrapped_key: bytes,
    ciphertext: bytes,
    *,
    disclosure_id: str | None,
) -> None:
    sql = statements(session).accounting_insert
    fetchone(session, sql, (leaf_index, kek_version, wrapped_key, ciphertext, disclosure_id))


def leaf_of_disclosure(session: Session, disclosure_id: str) -> int | None:
    """The leaf index whose accounting record is disclosure ``disclosure_id``."""
    stmt = select(audit_accounting.c.leaf_index).where(
        audit_accounting.c.disclosure_id == disclosure_id
    )
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else int(found)


def disclosure_ids(session: Session, leaf_indices: Collection[int]) -> dict[int, str]:
    """``{leaf_index: disclosure_id}`` for those of ``leaf_indices`` that have one."""
    if not leaf_indices:
        return {}
    stmt = select(audit_accounting.c.leaf_index, audit_accounting.c.disclosure_id).where(
        audit_accounting.c.leaf_index.in_(sorted(leaf_indices))
    )
    return {int(i): str(d) for i, d in session.execute(stmt) if d is not None}


def disclosed_leaves_of_subject(session: Session, subject_ref: str) -> list[tuple[int, bytes]]:
    """``(leaf_index, leaf_hash)`` of every ``disclosed`` leaf of one subject pseudonym,
    in index order (refusals and no-matches are not disclosures)."""
    stmt = (
        select(audit_leaves.c.leaf_index, audit_leaves.c.leaf_hash)
        .where(audit_leaves.c.subject_ref == subject_ref)
        .where(audit_leaves.c.outcome == "disclosed")
        .order_by(audit_leaves.c.leaf_index)
    )
    return [(int(i), bytes(h)) for i, h in session.execute(stmt)]


def leaf_range(session: Session, start: int, below: int, limit: int) -> list[Any]:
    """``(leaf_index, leaf_json)`` of at most ``limit`` leaves in ``[start, below)``,
    in index order."""
    return list(session.execute(_LEAF_RANGE, {"start": start, "below": below, "n": limit}))


_LEAF_RANGE = (
    select(audit_leaves.c.leaf_index, audit_leaves.c.leaf_json)
    .where(audit_leaves.c.leaf_index >= bindparam("start"))
    .where(audit_leaves.c.leaf_index < bindparam("below"))
    .order_by(audit_leaves.c.leaf_index)
    .limit(bindparam("n"))
)


# -- accounting records (sealed; this module only moves their bytes)

_ACC = audit_accounting


def accounting_record(session: Session, leaf_index: int) -> Any:
    """``(kek_version, wrapped_key, ciphertext)`` of a leaf's record, or None."""
    return session.execute(
        select(_ACC.c.kek_version, _ACC.c.wrapped_key, _ACC.c.ciphertext).where(
            _ACC.c.leaf_index == leaf_index
        )
    ).one_or_none()


def accounting_records(session: Session, start: int, end: int | None) -> Iterator[Any]:
    """Every record of leaves ``[start, end)`` in index order (all columns)."""
    query = select(_ACC).where(_ACC.c.leaf_index >= start).order_by(_ACC.c.leaf_index)
    if end is not None:
        query = query.where(_ACC.c.leaf_index < end)
    yield from session.execute(query)


def accounting_kek_versions(session: Session) -> set[int]:
    """KEK versions that accounting records are still wrapped under."""
    return {int(v) for v in session.execute(select(_ACC.c.kek_version).distinct()).scalars()}


def accounting_keys_not_under(session: Session, kek_version: int) -> list[Any]:
    """``(leaf_index, kek_version, wrapped_key)`` of records wrapped under another KEK."""
    return list(
        session.execute(
            select(_ACC.c.leaf_index, _ACC.c.kek_version, _ACC.c.wrapped_key).where(
                _ACC.c.kek_version != kek_version
            )
        ).all()
    )


def set_accounting_key(
    session: Session, leaf_index: int, kek_version: int, wrapped_key: bytes
) -> None:
    """Replace a record's wrapped data key (KEK rotation; the ciphertext stays)."""
    session.execute(
        update(_ACC)
        .where(_ACC.c.leaf_index == leaf_index)
        .values(kek_version=kek_version, wrapped_key=wrapped_key)
    )


# -- checkpoints and leaf reads (through the expression layer: not per disclosure)

_CP = audit_checkpoints


def last_checkpoint(session: Session) -> Any:
    """``(tree_size, root_hash, note)`` of the newest stored checkpoint, or None."""
    return session.execute(
        select(_CP.c.tree_size, _CP.c.root_hash, _CP.c.note).order_by(_CP.c.id.desc()).limit(1)
    ).one_or_none()


def add_checkpoint(
    session: Session, tree_size: int, root_hash: bytes, note: str, created_at: datetime
) -> None:
    session.execute(
        insert(_CP).values(
            tree_size=tree_size, root_hash=root_hash, note=note, created_at=created_at
        )
    )


def checkpoints(session: Session) -> list[Any]:
    """``(id, tree_size, root_hash, note)`` of every stored checkpoint, oldest first."""
    query = select(_CP.c.id, _CP.c.tree_size, _CP.c.root_hash, _CP.c.note).order_by(_CP.c.id)
    return list(session.execute(query).all())


def leaves_with_hashes(session: Session, start: int, limit: int) -> Iterator[Any]:
    """``(leaf_index, leaf_json, leaf_hash)`` of up to ``limit`` leaves from ``start``."""
    yield from session.execute(
        select(audit_leaves.c.leaf_index, audit_leaves.c.leaf_json, audit_leaves.c.leaf_hash)
        .where(audit_leaves.c.leaf_index >= start)
        .order_by(audit_leaves.c.leaf_index)
        .limit(limit)
    )


def checkpoint_note_of_size(session: Session, tree_size: int) -> str | None:
    """The stored signed note of the checkpoint of ``tree_size`` leaves, or None."""
    stmt = select(_CP.c.note).where(_CP.c.tree_size == tree_size).order_by(_CP.c.id).limit(1)
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else str(found)


def leaf_json(session: Session, leaf_index: int) -> bytes | None:
    stmt = select(audit_leaves.c.leaf_json).where(audit_leaves.c.leaf_index == leaf_index)
    found = session.execute(stmt).scalar_one_or_none()
    return None if found is None else bytes(found)


def node_range(session: Session, level: int, start: int, end: int) -> list[bytes]:
    """Stored subtree hashes of ``level`` with node index in ``[start, end)``, in order
    (a tile: compiled once, run on the driver cursor)."""
    sql = statements(session).audit_node_range
    return [bytes(h) for (h,) in fetchall(session.connection(), sql, (level, start, end))]


def leaf_json_range(session: Session, start: int, end: int) -> list[bytes]:
    """Canonical JSON of leaves ``[start, end)``, in index order (an entry bundle)."""
    sql = statements(session).audit_leaf_json_range
    return [bytes(d) for (d,) in fetchall(session.connection(), sql, (start, end))]
