"""The database-backed log: appends, stored proofs, entries, concurrency, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from taxaddr import metrics
from taxaddr.audit import merkle
from taxaddr.audit.leaf import canonical
from taxaddr.audit.log import append_leaf, bulk_append, read_head
from taxaddr.audit.service import (
    consistency_proof,
    consistency_proof_json,
    get_entries,
    inclusion_proof,
    inclusion_proof_json,
    verify_log,
)
from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.db.schema import AuditLeaf, AuditNode
from taxaddr.errors import AuditUnavailable, RequestInvalid
from tests.audit.conftest import make_leaf

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _leaf_hashes(engine: Engine) -> list[bytes]:
    with write_transaction(engine) as session:
        rows = session.execute(select(AuditLeaf.leaf_json).order_by(AuditLeaf.leaf_index)).scalars()
        return [merkle.leaf_hash(bytes(r)) for r in rows]


def test_append_returns_index_hash_and_denormalized_columns(engine: Engine) -> None:
    with write_transaction(engine) as session:
        first = append_leaf(session, make_leaf(0))
        second = append_leaf(session, make_leaf(1))
    assert (first.index, first.tree_size, second.index, second.tree_size) == (0, 1, 1, 2)
    assert second.leaf_hash == merkle.leaf_hash(canonical(second.leaf))
    assert second.leaf["index"] == 1
    with write_transaction(engine) as session:
        row = session.get(AuditLeaf, 1)
        assert row is not None
        assert bytes(row.leaf_hash) == second.leaf_hash
        assert (row.agency, row.outcome, row.reason) == ("FBI", "denied", "statute_not_criminal")
        assert row.day.isoformat() == "2026-11-25"
        assert row.subject_ref == f"{1:064x}"
        head = read_head(session)
    assert head.tree_size == 2
    assert head.root_hash == merkle.root([first.leaf_hash, second.leaf_hash])


def test_stored_proofs_equal_reference_proofs(engine: Engine) -> None:
    n = 37
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(n)])
    hashes = _leaf_hashes(engine)
    with write_transaction(engine) as session:
        # node count: every completed perfect subtree, 2n - popcount(n) of them
        nodes = session.scalar(select(func.count()).select_from(AuditNode))
        assert nodes == 2 * n - n.bit_count()
        for size in (1, 2, 5, 8, 16, 31, 37):
            for index in range(size):
                proof = inclusion_proof(session, index, size)
                assert proof == merkle.inclusion_proof(hashes, index, size)
            for first in range(0, size + 1):
                assert consistency_proof(session, first, size) == merkle.consistency_proof(
                    hashes, first, size
                )
        as_json = inclusion_proof_json(session, 3, 37)
        assert as_json["leaf_index"] == 3
        assert as_json["tree_size"] == 37
        assert [bytes.fromhex(h) for h in as_json["hashes"]] == merkle.inclusion_proof(
            hashes, 3, 37
        )
        assert consistency_proof_json(session, 5, 37)["hashes"] == [
            h.hex() for h in merkle.consistency_proof(hashes, 5, 37)
        ]


@pytest.mark.parametrize(("leaf_index", "size"), [(-1, 3), (3, 3), (0, 0), (0, 11)])
def test_inclusion_proof_arguments_checked(engine: Engine, leaf_index: int, size: int) -> None:
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(10)])
        with pytest.raises(RequestInvalid):
            inclusion_proof(session, leaf_index, size)


def test_consistency_proof_arguments_checked(engine: Engine) -> None:
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(4)])
        with pytest.raises(RequestInvalid):
            consistency_proof(session, 3, 2)
        with pytest.raises(RequestInvalid):
            consistency_proof(session, 1, 5)


def test_get_entries(engine: Engine) -> None:
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(1005)])
    with write_transaction(engine) as session:
        page = get_entries(session, 2, 5)
        assert [e["index"] for e in page] == [2, 3, 4]
        assert page[0]["leaf"]["index"] == 2
        assert page[0]["leaf"]["request_id"] == make_leaf(2).request_id
        assert len(get_entries(session, 0, 5000)) == 1000  # at most 1000 per answer
        assert [e["index"] for e in get_entries(session, 1000, 5000)] == list(range(1000, 1005))
        assert get_entries(session, 2000, 2001) == []
        with pytest.raises(RequestInvalid):
            get_entries(session, 5, 5)


def test_append_failure_rolls_back_the_callers_transaction(engine: Engine) -> None:
    before = metrics.AUDIT_APPEND_FAILURES._value.get()

    def good_then_bad() -> None:
        with write_transaction(engine) as session:
            append_leaf(session, make_leaf(0))
            append_leaf(session, make_leaf(1, requester_id="123-45-6789"))

    with pytest.raises(AuditUnavailable):
        good_then_bad()
    assert metrics.AUDIT_APPEND_FAILURES._value.get() == before + 1
    with write_transaction(engine) as session:
        assert read_head(session).tree_size == 0
        assert session.scalar(select(func.count()).select_from(AuditLeaf)) == 0


def test_database_failure_is_audit_unavailable(engine: Engine) -> None:
    with write_transaction(engine) as session:
        append_leaf(session, make_leaf(0))
    # A stray node row where the next append must write: the insert fails.
    with write_transaction(engine) as session:
        session.execute(
            text("INSERT INTO audit_nodes (level, node_index, hash) VALUES (0, 1, :h)"),
            {"h": b"\x00" * 32},
        )
    before = metrics.AUDIT_APPEND_FAILURES._value.get()
    with (
        pytest.raises(AuditUnavailable, match="append failed"),
        write_transaction(engine) as session,
    ):
        append_leaf(session, make_leaf(1))
    assert metrics.AUDIT_APPEND_FAILURES._value.get() == before + 1
    with write_transaction(engine) as session:
        assert read_head(session).tree_size == 1


def test_concurrent_threads_append_gapless(
    engine: Engine, settings: Settings, keystore: FileKeyStore
) -> None:
    threads, per_thread = 6, 15
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for k in range(per_thread):
                with write_transaction(engine) as session:
                    append_leaf(session, make_leaf(1000 * t + k))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    _assert_gapless(engine, threads * per_thread)
    with write_transaction(engine) as session:
        assert verify_log(session, keystore, settings).ok


def _assert_gapless(engine: Engine, expected: int) -> None:
    with write_transaction(engine) as session:
        rows = session.execute(
            select(AuditLeaf.leaf_index, AuditLeaf.leaf_json).order_by(AuditLeaf.leaf_index)
        ).all()
        assert [r.leaf_index for r in rows] == list(range(expected))
        assert [json.loads(bytes(r.leaf_json))["index"] for r in rows] == list(range(expected))
        request_ids = {json.loads(bytes(r.leaf_json))["request_id"] for r in rows}
        assert len(request_ids) == expected
        assert read_head(session).tree_size == expected


_CHILD = """
import sys, threading
sys.path.insert(0, sys.argv[3])
from conftest import make_leaf
from taxaddr.audit.log import append_leaf
from taxaddr.db import make_engine, write_transaction
engine = make_engine(sys.argv[1])
base = int(sys.argv[2])
def work(t):
    for k in range(10):
        with write_transaction(engine) as session:
            append_leaf(session, make_leaf(base + 100 * t + k))
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
engine.dispose()
"""


@pytest.mark.postgres
def test_several_processes_append_gapless_on_postgres(
    pg_url: str, keys_dir: Path, append_n: Callable[..., None]
) -> None:
    from taxaddr.db import make_engine
    from taxaddr.migrate import upgrade

    upgrade(pg_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, pg_url, str(10_000 * (p + 1)), str(HERE)],
            env={**os.environ, "PYTHONPATH": str(REPO / "service")},
        )
        for p in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    engine = make_engine(pg_url)
    try:
        _assert_gapless(engine, 3 * 4 * 10)
        settings = Settings(env="test", database_url=pg_url, keys_dir=keys_dir)
        with write_transaction(engine) as session:
            report = verify_log(session, FileKeyStore(keys_dir), settings)
        assert report.ok, report.message
    finally:
        engine.dispose()
