"""Full verification: a clean log passes; each kind of tampering fails and is named."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select, text, update

from taxaddr.audit import merkle, scan, service
from taxaddr.audit.checkpoint import Checkpoint, sign_checkpoint
from taxaddr.audit.log import read_head
from taxaddr.audit.service import VerifyReport, latest_checkpoint, verify_log
from taxaddr.config import Settings
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db import write_transaction
from taxaddr.db.schema import AuditCheckpoint, AuditHead, AuditLeaf
from taxaddr.errors import IntegrityError


@pytest.fixture(autouse=True, params=["one-process", "helper-chunk-4", "helper-chunk-2"])
def scan_split(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the whole scan in this process and with the helper process
    scanning from the end in chunks of 4 and 2 leaves (so tampering, checkpoints and
    truncation fall on both sides of the split and on chunk boundaries)."""
    if request.param != "one-process":
        monkeypatch.setattr(scan, "CHUNK", int(request.param.rsplit("-", 1)[1]))
        monkeypatch.setattr(scan, "PARALLEL_MIN_CHUNKS", 1)
    else:
        monkeypatch.setattr(service, "PARALLEL", False)
    return str(request.param)


@pytest.fixture
def log(
    engine: Engine, settings: Settings, keystore: FileKeyStore, append_n: Callable[..., None]
) -> Engine:
    """Twelve leaves with signed checkpoints at sizes 5 and 12."""
    append_n(engine, 5)
    with write_transaction(engine) as session:
        latest_checkpoint(session, keystore, settings)
    append_n(engine, 7, start=5)
    with write_transaction(engine) as session:
        latest_checkpoint(session, keystore, settings)
    return engine


def _verify(engine: Engine, keystore: FileKeyStore, settings: Settings) -> VerifyReport:
    with write_transaction(engine) as session:
        return verify_log(session, keystore, settings)


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with write_transaction(engine) as session:
        session.execute(text(statement), params)


def test_clean_log_verifies(log: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    report = _verify(log, keystore, settings)
    assert report.ok, report.message
    assert (report.tree_size, report.checkpoints, report.first_bad_leaf) == (12, 2, None)
    assert report.message.startswith("ok: 12 leaves")


def test_empty_log_verifies(engine: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    with write_transaction(engine) as session:
        note = latest_checkpoint(session, keystore, settings)
    assert f"\n0\n{base64.b64encode(merkle.EMPTY_ROOT).decode()}\n" in note
    assert _verify(engine, keystore, settings).ok


def test_latest_checkpoint_reuses_until_the_tree_grows(
    log: Engine, keystore: FileKeyStore, settings: Settings, append_n: Callable[..., None]
) -> None:
    with write_transaction(log) as session:
        first = latest_checkpoint(session, keystore, settings)
        assert latest_checkpoint(session, keystore, settings) == first
    append_n(log, 1, start=12)
    with write_transaction(log) as session:
        grown = latest_checkpoint(session, keystore, settings)
        count = len(session.execute(select(AuditCheckpoint.id)).all())
    assert grown != first
    assert "\n13\n" in grown
    assert count == 3  # old checkpoints are kept


def _leaf_json(engine: Engine, index: int) -> bytes:
    with write_transaction(engine) as session:
        row = session.get(AuditLeaf, index)
        assert row is not None
        return bytes(row.leaf_json)


def _edit_leaf(engine: Engine, index: int, *, rehash: bool) -> None:
    """Change leaf ``index``'s outcome in its JSON; with ``rehash`` its stored hash too."""
    edited = _leaf_json(engine, index).replace(b'"outcome":"', b'"outcome":"x')
    _sql(
        engine,
        "UPDATE audit_leaves SET leaf_json = :j, leaf_hash = COALESCE(:h, leaf_hash) "
        "WHERE leaf_index = :i",
        j=edited,
        h=merkle.leaf_hash(edited) if rehash else None,
        i=index,
    )


def test_edited_leaf_json_is_named(log: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    _edit_leaf(log, 7, rehash=False)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.first_bad_leaf == 7
    assert report.message.startswith("leaf 7:")


def test_edited_leaf_with_recomputed_hash_fails_the_signed_root(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    _edit_leaf(log, 7, rehash=True)
    report = _verify(log, keystore, settings)
    assert not report.ok
    # the checkpoint at size 5 still matches, so the bad leaf is in 5..11
    assert report.first_bad_leaf == 5
    assert "leaf 5: leaves 5..11 do not hash to the root signed in checkpoint 2" in report.message


def test_deleted_leaf_is_named(log: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    _sql(log, "DELETE FROM audit_leaves WHERE leaf_index = 4")
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.first_bad_leaf == 4
    assert report.message == "leaf 4: missing (next stored leaf is 5)"


def test_swapped_leaves_are_named(log: Engine, keystore: FileKeyStore, settings: Settings) -> None:
    a, b = _leaf_json(log, 2), _leaf_json(log, 9)
    for index, data in ((2, b), (9, a)):
        _sql(
            log,
            "UPDATE audit_leaves SET leaf_json = :j, leaf_hash = :h WHERE leaf_index = :i",
            j=data,
            h=merkle.leaf_hash(data),
            i=index,
        )
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.first_bad_leaf == 2
    assert report.message == "leaf 2: its index field is not 2"


def test_truncation_below_a_signed_checkpoint_is_named(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    # A careful attacker also rewinds the head to a consistent state of size 8.
    _sql(log, "DELETE FROM audit_nodes WHERE (node_index + 1) * (1 << level) > 8")
    _sql(log, "DELETE FROM audit_leaves WHERE leaf_index >= 8")
    with write_transaction(log) as session:
        hashes = [
            merkle.leaf_hash(bytes(j))
            for j in session.execute(
                select(AuditLeaf.leaf_json).order_by(AuditLeaf.leaf_index)
            ).scalars()
        ]
        session.execute(update(AuditHead).values(tree_size=8, compact_range=merkle.root(hashes)))
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.first_bad_leaf == 8
    assert report.message.startswith("leaf 8: missing (log truncated below signed checkpoint 2")
    with write_transaction(log) as session, pytest.raises(IntegrityError, match="smaller"):
        latest_checkpoint(session, keystore, settings)


def _note(engine: Engine, checkpoint_id: int) -> str:
    with write_transaction(engine) as session:
        cp = session.get(AuditCheckpoint, checkpoint_id)
        assert cp is not None
        return cp.note


def test_edited_checkpoint_signature_is_named(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    note = _note(log, 1)
    body, sig = note.split("\n\n")
    dash, name, blob = sig.strip().split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0xFF
    edited = f"{body}\n\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"
    _sql(log, "UPDATE audit_checkpoints SET note = :n WHERE id = 1", n=edited)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message == "checkpoint 1 (tree size 5): checkpoint signature is invalid"


def test_edited_checkpoint_root_is_named(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    note = _note(log, 2)
    lines = note.split("\n")
    fake_root = base64.b64encode(b"\x11" * 32).decode()
    edited = "\n".join([lines[0], lines[1], fake_root, *lines[3:]])
    _sql(
        log,
        "UPDATE audit_checkpoints SET note = :n, root_hash = :r WHERE id = 2",
        n=edited,
        r=b"\x11" * 32,
    )
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message.startswith("checkpoint 2 (tree size 12): checkpoint signature is invalid")


def test_edited_checkpoint_columns_are_named(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    _sql(log, "UPDATE audit_checkpoints SET root_hash = :r WHERE id = 2", r=b"\x11" * 32)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message == (
        "checkpoint 2 (tree size 12): stored size or root differ from the signed note"
    )


def test_checkpoint_signed_by_another_key_is_named(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    with write_transaction(log) as session:
        head = read_head(session)
    forged = sign_checkpoint(
        Checkpoint(settings.audit_origin, head.tree_size, head.root_hash),
        Ed25519PrivateKey.generate(),
        settings.audit_origin,
    )
    _sql(log, "UPDATE audit_checkpoints SET note = :n WHERE id = 2", n=forged)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message == "checkpoint 2 (tree size 12): no signature by the expected key"


def test_head_disagreeing_with_leaves_is_reported(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    _sql(log, "UPDATE audit_head SET tree_size = 13, compact_range = :c", c=b"\x01" * 96)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message == "leaf 12: missing (the log head says 13 leaves)"


def test_edited_leaf_after_the_last_checkpoint_is_named(
    log: Engine, keystore: FileKeyStore, settings: Settings, append_n: Callable[..., None]
) -> None:
    append_n(log, 3, start=12)  # leaves 12..14 are not covered by a checkpoint yet
    _edit_leaf(log, 13, rehash=False)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.first_bad_leaf == 13
    assert report.message == "leaf 13: its JSON does not match its leaf hash"


def test_leaf_changed_everywhere_after_the_last_checkpoint_fails_the_head(
    log: Engine, keystore: FileKeyStore, settings: Settings, append_n: Callable[..., None]
) -> None:
    append_n(log, 3, start=12)
    _edit_leaf(log, 13, rehash=True)
    report = _verify(log, keystore, settings)
    assert not report.ok
    assert report.message == "log head: its compact range does not match the recomputed tree"


def test_verify_while_appends_go_on(
    log: Engine, keystore: FileKeyStore, settings: Settings
) -> None:
    import threading

    from sqlalchemy.orm import Session

    from taxaddr.audit.log import append_leaf
    from tests.audit.conftest import make_leaf

    stop = threading.Event()

    def appender() -> None:
        i = 100
        while not stop.is_set() and i < 160:
            with write_transaction(log) as session:
                append_leaf(session, make_leaf(i))
                if i % 7 == 0:
                    latest_checkpoint(session, keystore, settings)
            i += 1

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        reports = []
        for _ in range(5):
            with Session(log) as session, session.begin():
                reports.append(verify_log(session, keystore, settings))
    finally:
        stop.set()
        thread.join()
    assert all(r.ok for r in reports), [r.message for r in reports]
    assert _verify(log, keystore, settings).ok
