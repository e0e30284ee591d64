"""The schema only changes through migrations: models and migrations never drift."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from taxaddr.db import make_engine
from taxaddr.migrate import alembic_config, upgrade


def test_no_drift_between_models_and_migrations(db_url: str) -> None:
    # db_url is already upgraded to head; `alembic check` fails on any difference.
    command.check(alembic_config(db_url))


# -- 0013: audit_leaves.leaf_index becomes SQLite's rowid ------------------------------


def _leaf_row(i: int) -> tuple[object, ...]:
    return (i, "2026-11-25T16:00:00Z", "2026-11-25", "FBI", None, "denied", "r", None, None,
            b'{"index":%d}' % i, bytes(32))  # fmt: skip


def _seed_at_0012(path: Path, *, dangling: bool = False) -> None:
    url = f"sqlite:///{path}"
    upgrade(url, "0012_court_orders")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=OFF")
    db.executemany(
        "INSERT INTO audit_leaves VALUES (?,?,?,?,?,?,?,?,?,?,?)", [_leaf_row(i) for i in range(5)]
    )
    for leaf in (3, 9) if dangling else (3,):
        db.execute(
            "INSERT INTO audit_accounting (leaf_index, kek_version, wrapped_key, ciphertext) "
            "VALUES (?, 1, x'00', x'00')",
            (leaf,),
        )
    db.close()


def _plan(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "EXPLAIN QUERY PLAN SELECT leaf_json FROM audit_leaves WHERE leaf_index >= 1 "
            "ORDER BY leaf_index"
        ).fetchall()
    finally:
        db.close()
    return " ".join(str(row[-1]) for row in rows)


def _dump(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return (
            db.execute("SELECT * FROM audit_leaves ORDER BY leaf_index").fetchall()
            + db.execute("SELECT leaf_index FROM audit_accounting ORDER BY leaf_index").fetchall()
        )
    finally:
        db.close()


def test_0013_makes_the_leaf_index_the_rowid_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _seed_at_0012(path)
    before = _dump(path)
    assert "INTEGER PRIMARY KEY" not in _plan(path)  # a separate key B-tree before

    upgrade(f"sqlite:///{path}")

    assert "INTEGER PRIMARY KEY" in _plan(path)
    assert _dump(path) == before
    # Foreign keys are enforced again on the service's connections afterwards.
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn, pytest.raises(IntegrityError):
            conn.exec_driver_sql(
                "INSERT INTO audit_accounting (leaf_index, kek_version, wrapped_key, ciphertext) "
                "VALUES (77, 1, x'00', x'00')"
            )
    finally:
        engine.dispose()

    command.downgrade(alembic_config(f"sqlite:///{path}"), "0012_court_orders")
    assert "INTEGER PRIMARY KEY" not in _plan(path)
    assert _dump(path) == before


def test_0013_refuses_a_database_with_a_dangling_accounting_row(tmp_path: Path) -> None:
    path = tmp_path / "dangling.db"
    _seed_at_0012(path, dangling=True)  # accounting row 9 names no leaf
    before = _dump(path)

    with pytest.raises(RuntimeError, match="foreign key"):
        upgrade(f"sqlite:///{path}")

    # Nothing changed: still at 0012, the old table, every row.
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0012_court_orders",)
        ]
    finally:
        db.close()
    assert "INTEGER PRIMARY KEY" not in _plan(path)
    assert _dump(path) == before
