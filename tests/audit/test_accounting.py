"""Encrypted accounting records: sealed, bound to their leaf, re-wrappable."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select, text

from taxaddr.audit.accounting import (
    iter_accounting,
    read_accounting,
    record_accounting,
    rewrap_accounting,
)
from taxaddr.audit.log import append_leaf
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.db.schema import AuditAccounting
from taxaddr.errors import AuditUnavailable, IntegrityError
from tests.audit.conftest import make_leaf

DETAIL = {
    "requester_id": "agent-0",
    "tin": "123-45-6789",
    "disclosed": {"street": "1 Main St", "city": "Springfield", "state": "DC", "zip": "20001"},
    "case_number": "1:26-cr-00123",
    "reason": "the address is needed to serve a warrant in the named case",
}


@pytest.fixture
def two_records(engine: Engine, keystore: FileKeyStore) -> Engine:
    with write_transaction(engine) as session:
        for i in range(2):
            leaf = append_leaf(session, make_leaf(i))
            record_accounting(session, keystore, leaf.index, {**DETAIL, "n": i})
    return engine


def test_record_decrypts_and_holds_no_plaintext(
    two_records: Engine, keystore: FileKeyStore
) -> None:
    with write_transaction(two_records) as session:
        assert read_accounting(session, keystore, 1) == {**DETAIL, "n": 1}
        assert [i for i, _ in iter_accounting(session, keystore)] == [0, 1]
        assert [d["n"] for _, d in iter_accounting(session, keystore, 1, 2)] == [1]
        blob = session.execute(select(AuditAccounting.ciphertext)).scalars().first()
    assert blob is not None
    assert b"123-45-6789" not in bytes(blob)
    assert b"Main St" not in bytes(blob)


def test_record_moved_to_another_leaf_does_not_open(
    two_records: Engine, keystore: FileKeyStore
) -> None:
    with write_transaction(two_records) as session:
        zero = session.get(AuditAccounting, 0)
        assert zero is not None
        session.execute(
            text(
                "UPDATE audit_accounting SET kek_version = :v, wrapped_key = :w, "
                "ciphertext = :c WHERE leaf_index = 1"
            ),
            {"v": zero.kek_version, "w": zero.wrapped_key, "c": zero.ciphertext},
        )
    with write_transaction(two_records) as session:
        assert read_accounting(session, keystore, 0)["n"] == 0
        with pytest.raises(IntegrityError, match="authentication"):
            read_accounting(session, keystore, 1)


def test_missing_record(engine: Engine, keystore: FileKeyStore) -> None:
    with write_transaction(engine) as session, pytest.raises(IntegrityError, match="leaf 3"):
        read_accounting(session, keystore, 3)


def test_record_for_unknown_leaf_fails_closed(engine: Engine, keystore: FileKeyStore) -> None:
    with pytest.raises(AuditUnavailable), write_transaction(engine) as session:
        record_accounting(session, keystore, 99, DETAIL)


def test_unserializable_detail_fails_closed(engine: Engine, keystore: FileKeyStore) -> None:
    def append_and_record() -> None:
        with write_transaction(engine) as session:
            leaf = append_leaf(session, make_leaf(0))
            record_accounting(session, keystore, leaf.index, {"bad": object()})

    with pytest.raises(AuditUnavailable):
        append_and_record()


def test_rewrap_after_kek_rotation(two_records: Engine, keystore: FileKeyStore) -> None:
    old = keystore.current_kek_version()
    new = keystore.new_kek_version()
    with write_transaction(two_records) as session:
        assert rewrap_accounting(session, keystore) == 2
        assert rewrap_accounting(session, keystore) == 0
    keystore.retire_kek(old)
    with write_transaction(two_records) as session:
        versions = set(session.execute(select(AuditAccounting.kek_version)).scalars())
        assert versions == {new}
        assert read_accounting(session, keystore, 0)["n"] == 0
