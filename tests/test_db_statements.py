"""Every compiled statement, for both dialects (no server needed): the driver's
placeholders, one per parameter, in the order the repositories pass them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Date, DateTime

from taxaddr.db.statements import (
    ADDRESS_COLUMNS,
    ADDRESS_INSERT_COLUMNS,
    ADDRESS_UPDATE_COLUMNS,
    AUDIT_LEAF_COLUMNS,
    Statement,
    Statements,
    _address_existing_stmt,
    compile_statement,
)

DIALECTS = {"sqlite": "?", "postgresql": "%s"}

# The parameter order each repository passes (taxaddr.db.repositories).
FIXED = {
    "requester_by_fingerprint": ("fingerprint",),
    "remember_request_id": ("requester_id", "request_id", "leaf_index", "used_at"),
    "case_usage": ("jti",),
    "case_reserve": ("jti", "iss", "number", "court", "agency", "max_disclosures"),
    "case_key_and_revocation": ("revoked_jti", "case_jti", "iss", "kid"),
    "audit_lock_head": ("id",),
    "audit_insert_head": ("id", "tree_size", "compact_range"),
    "audit_insert_leaf": AUDIT_LEAF_COLUMNS,
    "audit_insert_node": ("level", "node_index", "hash"),
    "audit_update_head": ("tree_size", "compact_range", "id"),
    "audit_leaf_chunk": ("start", "limit"),
    "audit_node_range": ("level", "start", "end"),
    "audit_leaf_json_range": ("start", "end"),
    "accounting_insert": (
        "leaf_index",
        "kek_version",
        "wrapped_key",
        "ciphertext",
        "disclosure_id",
    ),
    "requester_usage": (
        "requester_id",
        "now",
        "now",
        "jti",
        "requester_id",
        "since",
        "subject_ref",
        "requester_id",
        "jti",
    ),
    "requester_case_insert": ("requester_id", "jti", "nbf", "exp"),
    "requester_subject_insert": ("leaf_index", "requester_id", "subject_ref", "disclosed_at"),
    "stays_in_force": ("now", "now"),
    "address_insert": ADDRESS_INSERT_COLUMNS,
    "address_update": (*ADDRESS_UPDATE_COLUMNS, "record_id"),
    "rate_limit_take": ("key", "capacity", *("capacity", "per_second") * 4),
    "address_existing_any": ("blind_indexes",),
    "bulk_writer_lock": ("lock_key",),
    "address_max_id": (),
}
POSTGRES_ONLY = {"rate_limit_take", "address_existing_any", "bulk_writer_lock", "address_max_id"}


def _placeholders(sql: str, mark: str) -> int:
    other = "%s" if mark == "?" else "?"
    assert other not in sql, f"{other!r} placeholder in {sql}"
    assert not re.search(r"%\(\w+\)s|:\w+\b(?!:)", sql.replace("::", "")), sql
    return sql.count(mark)


def _check(statement: Statement, mark: str, expected: tuple[str, ...]) -> None:
    assert statement.params == expected, statement.name
    assert _placeholders(statement.sql, mark) == len(expected), statement.sql


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_fixed_statement_compiles_with_its_parameters_in_order(dialect: str) -> None:
    statements = Statements(dialect)
    fixed = {n: p for n, p in FIXED.items() if dialect == "postgresql" or n not in POSTGRES_ONLY}
    assert set(statements.fixed) == set(fixed)
    for name, expected in fixed.items():
        _check(statements.fixed[name], DIALECTS[dialect], expected)
        assert getattr(statements, name) == statements.fixed[name].sql


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("count", [1, 2, 7])
def test_every_counted_statement_compiles_for_each_count(dialect: str, count: int) -> None:
    statements = Statements(dialect)
    mark = DIALECTS[dialect]
    lookup = statements.variable("address_lookup", count)
    _check(lookup, mark, ("blind_index", *(f"period_{n}" for n in range(count))))
    assert statements.address_lookup(count) == lookup.sql
    for column in ADDRESS_COLUMNS:
        assert f"address_records.{column}" in lookup.sql
    existing = statements.variable("address_existing", count)
    _check(existing, mark, tuple(f"blind_index_{n + 1}" for n in range(count)))
    assert statements.address_existing(count) == existing.sql
    # Expanded from a template compiled once; the same string as compiling for the count.
    compiled = compile_statement("x", _address_existing_stmt(count), statements.dialect)
    assert existing.sql == compiled.sql
    assert existing.params == compiled.params
    nodes = statements.variable("audit_nodes", count)
    expected = tuple(p for j in range(count) for p in (f"level_{j}", f"node_index_{j}"))
    _check(nodes, mark, expected)
    assert statements.audit_nodes(count) == nodes.sql


def test_dialect_differences_are_in_the_compiled_strings() -> None:
    lite, pg = Statements("sqlite"), Statements("postgresql")
    # PostgreSQL locks the head row; SQLite's BEGIN IMMEDIATE already serializes writers.
    assert pg.audit_lock_head.rstrip().endswith("FOR UPDATE")
    assert "FOR UPDATE" not in lite.audit_lock_head
    for statements in (lite, pg):
        assert "ON CONFLICT DO NOTHING" in statements.remember_request_id
        assert "RETURNING" in statements.remember_request_id
        assert "RETURNING" in statements.case_reserve


def test_value_adapters_match_what_sqlalchemy_stores() -> None:
    lite, pg = Statements("sqlite"), Statements("postgresql")
    moment = datetime(2025, 3, 4, 5, 6, 7, 8910, tzinfo=timezone(timedelta(hours=-5)))
    day = date(2025, 1, 2)
    for statements in (lite, pg):
        dialect = statements.dialect
        as_date = Date().dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        as_time = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        assert statements.date(day) == as_date(day)
        assert statements.datetime(moment.astimezone(UTC)) == (
            as_time(moment.astimezone(UTC)) if as_time else moment
        )
    assert lite.datetime(moment) == "2025-03-04 10:06:07.008910"  # the UTC wall clock
    assert pg.datetime(moment) == moment
    assert lite.date(day) == "2025-01-02"
    assert pg.date(day) == day


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Statements("oracle")
