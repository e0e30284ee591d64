"""Every hot statement, built from the tables and compiled once per dialect.

The hot paths run their statements on the DBAPI cursor (see :mod:`taxaddr.db.driver`):
through SQLAlchemy's expression layer they cost several times the database work. The
statements are still written here with SQLAlchemy Core against the :mod:`taxaddr.db.schema`
tables, so a renamed column fails at import, and compiled ONCE per dialect into the
driver's positional form (``?`` for sqlite3, ``%s`` for psycopg). Callers pass their
parameters as a tuple in the order of :attr:`Statement.params` (checked by
``tests/test_db_statements.py`` for both dialects).

Statements whose shape depends on a count (``IN`` lists, OR-ed keys) are compiled once per
count and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ClauseElement,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import Select

from taxaddr.db.schema import (
    address_records,
    audit_accounting,
    audit_head,
    audit_leaves,
    audit_nodes,
    case_issuer_keys,
    case_issuers,
    case_references,
    court_orders,
    rate_limit_buckets,
    request_ids,
    requester_cases,
    requester_subjects,
    requesters,
    revoked_case_jtis,
)

# Columns a lookup reads, in the order :func:`taxaddr.db.addresses` returns them.
ADDRESS_COLUMNS = (
    "id",
    "blind_index",
    "tax_period",
    "as_of",
    "kek_version",
    "wrapped_key",
    "name_ct",
    "address_ct",
)
ADDRESS_INSERT_COLUMNS = (*ADDRESS_COLUMNS, "created_at", "updated_at")
# PostgreSQL's binary COPY needs each value's exact type (ADDRESS_INSERT_COLUMNS order).
ADDRESS_COPY_TYPES = (
    "int8",
    "bytea",
    "varchar",
    "date",
    "int4",
    "bytea",
    "bytea",
    "bytea",
    "timestamptz",
    "timestamptz",
)
ADDRESS_UPDATE_COLUMNS = (
    "as_of",
    "kek_version",
    "wrapped_key",
    "name_ct",
    "address_ct",
    "updated_at",
)
AUDIT_LEAF_COLUMNS = (
    "leaf_index",
    "time",
    "day",
    "agency",
    "statute",
    "outcome",
    "reason",
    "case_jti",
    "subject_ref",
    "leaf_json",
    "leaf_hash",
)


@dataclass(frozen=True)
class Statement:
    """One statement as the driver runs it: its SQL and its parameter names, in order."""

    name: str
    sql: str
    params: tuple[str, ...]


def _compile_dialect(name: str) -> Dialect:
    """The dialect a statement is compiled for: the driver's positional paramstyle."""
    if name == "sqlite":
        return sqlite.dialect()
    if name == "postgresql":
        return postgresql.psycopg.dialect(paramstyle="format")  # type: ignore[no-untyped-call]
    raise ValueError(f"unsupported database dialect {name!r}")


def compile_statement(name: str, stmt: ClauseElement, dialect: Dialect) -> Statement:
    compiled = stmt.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)  # noqa: S101 - statements, never DDL
    params = tuple(compiled.positiontup or ())
    return Statement(name, compiled.string, params)


def _p(name: str) -> Any:
    return bindparam(name)


def _insert(dialect_name: str, table: Any) -> Any:
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table)


def _builders(dialect_name: str) -> dict[str, ClauseElement]:
    """The fixed-shape statements, as SQLAlchemy Core."""
    c, k, i, r = case_references, case_issuer_keys, case_issuers, revoked_case_jtis
    head, leaves, nodes = audit_head, audit_leaves, audit_nodes
    a = address_records
    # -- the deployment-wide rate limit (PostgreSQL only): refill, spend and answer in
    # one atomic upsert on the requester's bucket row; the database's clock, not a
    # replica's, measures the refill.
    postgres_only: dict[str, ClauseElement] = (
        {
            "rate_limit_take": _rate_limit_take(dialect_name),
            # the importer's stored keys of one batch: one array parameter, any count
            "address_existing_any": select(
                a.c.id, a.c.blind_index, a.c.tax_period, a.c.as_of
            ).where(a.c.blind_index == any_(bindparam("blind_indexes"))),
            # the importer's first statements of a batch (pipelined in one round trip)
            "bulk_writer_lock": select(func.pg_advisory_xact_lock(bindparam("lock_key"))),
            "address_max_id": select(func.coalesce(func.max(a.c.id), literal_column("0"))),
        }
        if dialect_name == "postgresql"
        else {}
    )
    lock_head: Select[Any] = select(head.c.tree_size, head.c.compact_range).where(
        head.c.id == _p("id")
    )
    return {
        **postgres_only,
        # -- requesters and the replay guard
        "requester_by_fingerprint": select(
            requesters.c.id, requesters.c.agency, requesters.c.role, requesters.c.revoked_at
        ).where(requesters.c.fingerprint == _p("fingerprint")),
        # Adds the (requester, request_id) row, or nothing when it exists (or a concurrent
        # twin committed it first). ON CONFLICT ... RETURNING: SQLite >= 3.35, PostgreSQL.
        "remember_request_id": _insert(dialect_name, request_ids)
        .values(
            requester_id=_p("requester_id"),
            request_id=_p("request_id"),
            leaf_index=_p("leaf_index"),
            used_at=_p("used_at"),
        )
        .on_conflict_do_nothing()
        .returning(request_ids.c.leaf_index),
        # -- case references
        "case_usage": select(c.c.disclosures_used).where(c.c.jti == _p("jti")),
        # The case facts are part of the condition: a row first recorded under this jti
        # for other facts never gives up its quota to this token. On PostgreSQL the
        # UPDATE locks the row and re-evaluates the WHERE against the newest count.
        "case_reserve": update(c)
        .where(
            c.c.jti == _p("jti"),
            c.c.iss == _p("iss"),
            c.c.number == _p("number"),
            c.c.court == _p("court"),
            c.c.agency == _p("agency"),
            c.c.max_disclosures == _p("max_disclosures"),
            c.c.disclosures_used < c.c.max_disclosures,
        )
        .values(disclosures_used=c.c.disclosures_used + literal_column("1"))
        .returning(c.c.disclosures_used),
        # Verification steps 4 and 9 in one round trip: the key, its issuer's removal,
        # whether the jti is revoked and the case facts first seen under it.
        "case_key_and_revocation": select(
            k.c.alg,
            k.c.public_key,
            k.c.not_before,
            k.c.not_after,
            k.c.removed_at,
            i.c.removed_at,
            select(func.count())
            .select_from(r)
            .where(r.c.jti == _p("revoked_jti"))
            .scalar_subquery(),
            c.c.iss,
            c.c.number,
            c.c.court,
            c.c.agency,
            c.c.max_disclosures,
            c.c.disclosures_used,
        )
        .select_from(k.join(i, i.c.id == k.c.iss).outerjoin(c, c.c.jti == _p("case_jti")))
        .where(k.c.iss == _p("iss"), k.c.kid == _p("kid")),
        # -- audit log (the caller's BEGIN IMMEDIATE serializes SQLite; PostgreSQL locks
        # the head row)
        "audit_lock_head": lock_head.with_for_update(),
        "audit_insert_head": _insert(dialect_name, head).values(
            id=_p("id"), tree_size=_p("tree_size"), compact_range=_p("compact_range")
        ),
        "audit_insert_leaf": _insert(dialect_name, leaves).values(
            {name: _p(name) for name in AUDIT_LEAF_COLUMNS}
        ),
        "audit_insert_node": _insert(dialect_name, nodes).values(
            level=_p("level"), node_index=_p("node_index"), hash=_p("hash")
        ),
        "audit_update_head": update(head)
        .where(head.c.id == _p("id"))
        .values(tree_size=_p("tree_size"), compact_range=_p("compact_range")),
        "audit_leaf_chunk": select(leaves.c.leaf_json)
        .where(leaves.c.leaf_index >= _p("start"))
        .order_by(leaves.c.leaf_index)
        .limit(_p("limit"))
        .offset(literal_column("0")),  # SQLite's compiler adds an OFFSET; keep it constant
        # tlog-tiles reads: one level's hashes, a range of leaves (both by primary key)
        "audit_node_range": select(nodes.c.hash)
        .where(
            nodes.c.level == _p("level"),
            nodes.c.node_index >= _p("start"),
            nodes.c.node_index < _p("end"),
        )
        .order_by(nodes.c.node_index),
        "audit_leaf_json_range": select(leaves.c.leaf_json)
        .where(leaves.c.leaf_index >= _p("start"), leaves.c.leaf_index < _p("end"))
        .order_by(leaves.c.leaf_index),
        "accounting_insert": _insert(dialect_name, audit_accounting).values(
            leaf_index=_p("leaf_index"),
            kek_version=_p("kek_version"),
            wrapped_key=_p("wrapped_key"),
            ciphertext=_p("ciphertext"),
            disclosure_id=_p("disclosure_id"),
        ),
        # -- personal limits (taxaddr.disclosure.limits): both counts and whether the
        # case is recorded, in one round trip
        "requester_usage": _requester_usage_stmt(),
        # one row per requester a case names, the first time a request under it is allowed
        "requester_case_insert": _insert(dialect_name, requester_cases)
        .values(requester_id=_p("requester_id"), jti=_p("jti"), nbf=_p("nbf"), exp=_p("exp"))
        .on_conflict_do_nothing(),
        "requester_subject_insert": _insert(dialect_name, requester_subjects).values(
            leaf_index=_p("leaf_index"),
            requester_id=_p("requester_id"),
            subject_ref=_p("subject_ref"),
            disclosed_at=_p("disclosed_at"),
        ),
        # -- court orders: the stays in force (nbf <= now < exp or no exp, not lifted)
        "stays_in_force": select(
            court_orders.c.jti, court_orders.c.number, court_orders.c.court, court_orders.c.scope
        )
        .where(
            court_orders.c.kind == literal_column("'stay'"),
            court_orders.c.lifted_by.is_(None),
            court_orders.c.nbf <= _p("now"),
            or_(court_orders.c.exp.is_(None), court_orders.c.exp > _p("now")),
        )
        .order_by(court_orders.c.nbf, court_orders.c.jti),
        # -- address records (the importer's executemany)
        "address_insert": _insert(dialect_name, a).values(
            {name: _p(name) for name in ADDRESS_INSERT_COLUMNS}
        ),
        "address_update": update(a)
        .where(a.c.id == _p("record_id"))
        .values({name: _p(name) for name in ADDRESS_UPDATE_COLUMNS}),
    }


class Statements:
    """One dialect's compiled statements and the value adapters the driver needs."""

    def __init__(self, dialect_name: str) -> None:
        self.dialect_name = dialect_name
        self.dialect = _compile_dialect(dialect_name)
        fixed = {
            name: compile_statement(name, stmt, self.dialect)
            for name, stmt in _builders(dialect_name).items()
        }
        self.fixed = fixed
        self.requester_by_fingerprint = fixed["requester_by_fingerprint"].sql
        self.remember_request_id = fixed["remember_request_id"].sql
        self.case_usage = fixed["case_usage"].sql
        self.case_reserve = fixed["case_reserve"].sql
        self.case_key_and_revocation = fixed["case_key_and_revocation"].sql
        self.audit_lock_head = fixed["audit_lock_head"].sql
        self.audit_insert_head = fixed["audit_insert_head"].sql
        self.audit_insert_leaf = fixed["audit_insert_leaf"].sql
        self.audit_insert_node = fixed["audit_insert_node"].sql
        self.audit_update_head = fixed["audit_update_head"].sql
        self.audit_leaf_chunk = fixed["audit_leaf_chunk"].sql
        self.audit_node_range = fixed["audit_node_range"].sql
        self.audit_leaf_json_range = fixed["audit_leaf_json_range"].sql
        self.accounting_insert = fixed["accounting_insert"].sql
        self.requester_usage = fixed["requester_usage"].sql
        self.requester_case_insert = fixed["requester_case_insert"].sql
        self.requester_subject_insert = fixed["requester_subject_insert"].sql
        self.stays_in_force = fixed["stays_in_force"].sql
        self.rate_limit_take = fixed["rate_limit_take"].sql if "rate_limit_take" in fixed else ""
        """PostgreSQL only (empty on SQLite)."""
        self.address_existing_any = (
            fixed["address_existing_any"].sql if "address_existing_any" in fixed else ""
        )
        """PostgreSQL only (empty on SQLite)."""
        self.bulk_writer_lock = fixed["bulk_writer_lock"].sql if "bulk_writer_lock" in fixed else ""
        """PostgreSQL only: the bulk writers' transaction-scoped advisory lock (its key)."""
        self.address_max_id = fixed["address_max_id"].sql if "address_max_id" in fixed else ""
        """PostgreSQL only: the highest address record id (0 if none)."""
        self.address_copy = (
            f"COPY {address_records.name} ({', '.join(ADDRESS_INSERT_COLUMNS)}) "
            "FROM STDIN (FORMAT BINARY)"
        )
        """PostgreSQL's bulk insert of new address records (psycopg ``copy``), columns in
        the order of :data:`ADDRESS_INSERT_COLUMNS`, types :data:`ADDRESS_COPY_TYPES`."""
        self.address_insert = fixed["address_insert"].sql
        self.address_update = fixed["address_update"].sql
        self.address_lookup = lru_cache(maxsize=64)(self._address_lookup)
        # The importer's IN list has one marker per distinct key of a batch (up to 100,000,
        # a count that varies from batch to batch): compiling per count cost ~12 ms per
        # 1,000 keys, so the list is expanded from a template compiled once.
        self._existing_template = compile_statement(
            "address_existing", _address_existing_stmt(None), self.dialect
        )
        self._mark = "?" if dialect_name == "sqlite" else "%s"
        self.address_existing = lru_cache(maxsize=256)(self._address_existing)
        self.audit_nodes = lru_cache(maxsize=256)(self._audit_nodes)
        # Value adapters: what the driver must receive for what SQLAlchemy would write
        # (tests/test_db_statements.py compares them with the dialect's bind processors).
        self.date: Callable[[date], Any] = _sqlite_date if dialect_name == "sqlite" else _same
        """A ``Date`` column's value (SQLite: ISO text)."""
        self.datetime: Callable[[datetime], Any] = (
            _sqlite_datetime if dialect_name == "sqlite" else _same
        )
        """A ``DateTime(timezone=True)`` column's value for an aware datetime (SQLite:
        SQLAlchemy's text form of the UTC wall clock; PostgreSQL: the datetime)."""

    # -- statements whose shape depends on a count

    def variable(self, name: str, count: int) -> Statement:
        """The compiled statement ``name`` (address_lookup, address_existing,
        audit_nodes) for ``count`` values."""
        if name == "address_existing":
            template = self._existing_template
            marks = ", ".join([self._mark] * count)
            sql = template.sql.replace(f"__[POSTCOMPILE_{_KEYS}]", marks)
            return Statement(name, sql, tuple(f"{_KEYS}_{n + 1}" for n in range(count)))
        build = {"address_lookup": _address_lookup_stmt, "audit_nodes": _audit_nodes_stmt}[name]
        return compile_statement(name, build(count), self.dialect)

    def _address_lookup(self, periods: int) -> str:
        return self.variable("address_lookup", periods).sql

    def _address_existing(self, count: int) -> str:
        return self.variable("address_existing", count).sql

    def _audit_nodes(self, count: int) -> str:
        return self.variable("audit_nodes", count).sql


def _sqlite_date(value: date) -> str:
    return value.isoformat()


def _sqlite_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _same(value: Any) -> Any:
    return value


def _rate_limit_take(dialect_name: str) -> ClauseElement:
    """PostgreSQL only (SQLite servers keep their buckets in a shared file); the
    statement's own start time is ``now``, never earlier than the stored one."""
    b = rate_limit_buckets
    now = func.extract("epoch", func.statement_timestamp())
    refilled = func.least(
        _p("capacity"),
        b.c.tokens + func.greatest(literal_column("0.0"), now - b.c.updated_at) * _p("per_second"),
    )
    granted = refilled >= literal_column("1.0")
    spent = case((granted, refilled - literal_column("1.0")), else_=refilled)
    fresh = _insert(dialect_name, b).values(
        key=_p("key"),
        tokens=_p("capacity") - literal_column("1.0"),
        updated_at=now,
        granted=literal_column("true"),
    )
    upsert: ClauseElement = fresh.on_conflict_do_update(
        index_elements=[b.c.key],
        set_={
            "tokens": spent,
            "updated_at": func.greatest(b.c.updated_at, now),
            "granted": granted,
        },
    ).returning(b.c.granted, b.c.tokens)
    return upsert


def _requester_usage_stmt() -> ClauseElement:
    """``(open_cases, subjects, case_recorded)`` of one requester (see
    :func:`taxaddr.db.repositories.limits.usage`)."""
    c, s = requester_cases, requester_subjects
    cases = select(func.count()).where(
        c.c.requester_id == _p("requester_id"),
        c.c.nbf <= _p("now"),
        c.c.exp > _p("now"),
        c.c.jti != _p("jti"),
        c.c.jti.not_in(select(revoked_case_jtis.c.jti)),
    )
    subjects = select(func.count(func.distinct(s.c.subject_ref))).where(
        s.c.requester_id == _p("requester_id"),
        s.c.disclosed_at > _p("since"),
        s.c.subject_ref != _p("subject_ref"),
    )
    recorded = (
        select(func.count())
        .where(c.c.requester_id == _p("requester_id"), c.c.jti == _p("jti"))
        .scalar_subquery()
    )
    return select(cases.scalar_subquery(), subjects.scalar_subquery(), recorded)


def _address_lookup_stmt(periods: int) -> ClauseElement:
    a = address_records
    return select(*(a.c[name] for name in ADDRESS_COLUMNS)).where(
        a.c.blind_index == _p("blind_index"),
        a.c.tax_period.in_([_p(f"period_{n}") for n in range(periods)]),
    )


_KEYS = "blind_index"


def _address_existing_stmt(count: int | None) -> ClauseElement:
    """``count`` markers, or (None) one expanding parameter: the template."""
    a = address_records
    keys = (
        bindparam(_KEYS, expanding=True)
        if count is None
        else [_p(f"{_KEYS}_{n + 1}") for n in range(count)]
    )
    return select(a.c.id, a.c.blind_index, a.c.tax_period, a.c.as_of).where(
        a.c.blind_index.in_(keys)
    )


def _audit_nodes_stmt(count: int) -> ClauseElement:
    # One primary-key probe per node, OR-ed: SQLite and PostgreSQL both search the key
    # (a row-value IN list makes SQLite scan).
    n = audit_nodes
    return select(n.c.level, n.c.node_index, n.c.hash).where(
        or_(
            *(
                and_(n.c.level == _p(f"level_{j}"), n.c.node_index == _p(f"node_index_{j}"))
                for j in range(count)
            )
        )
    )


_BY_DIALECT: dict[str, Statements] = {}


def statements_for(dialect: Dialect) -> Statements:
    """The compiled statements of ``dialect`` (compiled on first use)."""
    found = _BY_DIALECT.get(dialect.name)
    if found is None:
        found = _BY_DIALECT[dialect.name] = Statements(dialect.name)
    return found


__all__ = [
    "ADDRESS_COLUMNS",
    "ADDRESS_INSERT_COLUMNS",
    "ADDRESS_UPDATE_COLUMNS",
    "AUDIT_LEAF_COLUMNS",
    "Statement",
    "Statements",
    "compile_statement",
    "statements_for",
]
