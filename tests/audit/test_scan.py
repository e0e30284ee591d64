"""The verifier's chunk scan: pure chunk hashing, the wire format, and the split between
this process and the helper process (taxaddr.audit.scan)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import merkle, scan
from taxaddr.audit.leaf import INDEX_MARKER
from taxaddr.db import make_engine
from taxaddr.db.repositories import audit as audit_repo


def _leaf(i: int) -> bytes:
    return b'{"a":"x"' + INDEX_MARKER % i + b'disclosed"}'


def _fold(results: list[scan.ChunkResult]) -> merkle.CompactRange:
    compact = merkle.CompactRange()
    for result in results:
        for level, h in result.subtrees:
            compact.push_subtree(level, h)
    return compact


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=70),
    st.sampled_from([1, 2, 4, 8, 16]),
    st.lists(st.integers(min_value=0, max_value=80), max_size=5),
)
def test_chunks_fold_to_the_rfc6962_root_at_every_cut(n: int, chunk: int, cuts: list[int]) -> None:
    datas = [_leaf(i) for i in range(n)]
    results = [scan.scan_chunk(datas[s : s + chunk], s, cuts) for s in range(0, n, chunk)]
    assert all(r.indices_ok for r in results)
    compact = merkle.CompactRange()
    leaf_hashes = [merkle.leaf_hash(d) for d in datas]
    for result in results:
        for level, h in result.subtrees:
            compact.push_subtree(level, h)
            # every cut inside the range is a subtree boundary: its root is checkable there
            if compact.size in cuts:
                assert compact.root() == merkle.root(leaf_hashes[: compact.size])
    assert compact.size == n
    assert compact.root() == merkle.root(leaf_hashes)


def test_a_misplaced_index_field_fails_its_chunk_only() -> None:
    datas = [_leaf(i) for i in range(8)]
    datas[5] = _leaf(6)
    assert scan.scan_chunk(datas[:4], 0, []).indices_ok
    bad = scan.scan_chunk(datas[4:], 4, [])
    assert (bad.indices_ok, bad.start, bad.end, bad.subtrees) == (False, 4, 8, ())


def test_wire_format_round_trips_in_pieces() -> None:
    results = [scan.scan_chunk([_leaf(i) for i in range(s, s + 4)], s, [6]) for s in (0, 4, 8)]
    results.append(scan.ChunkResult(12, 12, True, ()))
    results.append(scan.ChunkResult(16, 20, False, ()))
    wire = b"".join(scan.encode(r) for r in results)
    buffer = bytearray()
    decoded: list[scan.ChunkResult] = []
    for k in range(0, len(wire), 7):  # arrives in arbitrary pieces
        buffer += wire[k : k + 7]
        decoded += scan.decode_all(buffer)
    assert decoded == results
    assert not buffer


@pytest.fixture
def file_log(sqlite_url: str, append_n: Callable[..., None]) -> Engine:
    from taxaddr.migrate import upgrade

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    append_n(engine, 48)
    return engine


def _scan_all(
    engine: Engine, *, worker: bool | dict[str, Any], front_delay: float = 0.0
) -> tuple[list[scan.ChunkResult], int]:
    """(results, chunks the front scanned itself) of a 4-leaf-chunk scan of the log."""
    front = 0
    with Session(engine) as session, audit_repo.leaf_chunks(session) as read_chunk:
        spec = audit_repo.leaf_reader_spec(session) if worker is True else worker or None

        def read(start: int, count: int) -> list[bytes]:
            nonlocal front
            front += 1
            time.sleep(front_delay)
            return [d for (d,) in read_chunk(start, count)]

        results = list(
            scan.ChunkScanner(read, 48, [5, 12, 33], worker=spec, chunk=4, parallel_min_chunks=1)
        )
    return results, front


def test_the_helper_scans_from_the_end_and_the_results_are_the_same(file_log: Engine) -> None:
    alone, front_alone = _scan_all(file_log, worker=False)
    assert front_alone == 12
    # A slow front leaves time for the helper to start and take the upper chunks.
    split, front_split = _scan_all(file_log, worker=True, front_delay=0.05)
    assert split == alone
    assert 1 <= front_split < 12
    assert _fold(split).root() == _fold(alone).root()


def test_a_helper_that_fails_leaves_the_work_to_the_front(file_log: Engine) -> None:
    alone, _ = _scan_all(file_log, worker=False)
    broken = {"module": "sqlite3", "args": ["/nonexistent/dir/x.db"], "kwargs": {}, "sql": ""}
    results, front = _scan_all(file_log, worker=broken, front_delay=0.01)
    assert results == alone
    assert front == 12


def test_in_memory_databases_get_no_helper() -> None:
    engine = make_engine("sqlite://")
    with Session(engine) as session:
        assert audit_repo.leaf_reader_spec(session) is None
