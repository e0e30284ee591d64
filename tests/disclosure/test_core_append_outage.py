"""A database lost under the audit append is 503 database_unavailable, not audit_unavailable."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taxaddr.disclosure import core
from taxaddr.errors import AuditUnavailable, DatabaseUnavailable


class _Leaf:
    policy_version = "sha256:test"


class _Svc:
    criminal_statutes_of = None


LEAF, SVC = _Leaf(), _Svc()


def _failing_append(cause: BaseException) -> Any:
    def append(_session: Session, _leaf: object) -> None:
        raise AuditUnavailable("audit log append failed") from cause

    return append


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Session:
    monkeypatch.setattr(core, "note_policy_version", lambda *_a: None)
    return Session(create_engine("sqlite://"))


@pytest.mark.parametrize(
    "cause",
    [
        sqlite3.OperationalError("disk I/O error"),
        OperationalError("INSERT", (), Exception("server closed the connection")),
    ],
)
def test_lost_connection_under_the_append_is_database_unavailable(
    session: Session, monkeypatch: pytest.MonkeyPatch, cause: BaseException
) -> None:
    monkeypatch.setattr(core, "append_leaf", _failing_append(cause))
    with pytest.raises(DatabaseUnavailable):
        core._append_decision(SVC, session, LEAF)  # type: ignore[arg-type]


def test_other_append_failures_stay_audit_unavailable(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "append_leaf", _failing_append(ValueError("unencodable")))
    with pytest.raises(AuditUnavailable):
        core._append_decision(SVC, session, LEAF)  # type: ignore[arg-type]


def test_lost_connection_under_the_accounting_insert_is_database_unavailable(
    session: Session,
) -> None:
    # the same rule for the accounting record written after the leaf (a PostgreSQL
    # stopped between the two statements was once answered 503 audit_unavailable)
    cause = OperationalError("INSERT", (), Exception("server closed the connection"))
    with pytest.raises(DatabaseUnavailable), core._database_outage_is_database(session):
        raise AuditUnavailable("audit accounting record failed") from cause
    with pytest.raises(AuditUnavailable), core._database_outage_is_database(session):
        raise AuditUnavailable("audit accounting record failed") from ValueError("bad")
