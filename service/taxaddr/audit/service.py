"""What the API, the CLI and oversight ask of the audit log.

Reads (entries, proofs) work in any transaction. :func:`latest_checkpoint` may
write a new checkpoint, so on SQLite call it inside
``taxaddr.db.write_transaction``. :func:`verify_log` recomputes the whole tree
from the stored leaf bytes and trusts nothing else the database says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import merkle, scan
from taxaddr.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Verifier,
    open_checkpoint,
    sign_checkpoint,
)
from taxaddr.audit.leaf import INDEX_MARKER
from taxaddr.audit.log import Head, publish_tree_size, read_head
from taxaddr.audit.scan import ChunkScanner
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import write_transaction
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import IntegrityError, RequestInvalid

MAX_ENTRIES = 1000
PARALLEL = True
"""Let a large verification use a helper process (see :mod:`taxaddr.audit.scan`)."""


# -- checkpoints -------------------------------------------------------------------------


def audit_verifier(keystore: KeyStore, settings: Settings) -> Verifier:
    """The log's verifier key: named by the origin, the audit key's public half."""
    public_key = keystore.audit_signing_key().public_key()
    return Verifier.from_public_key(settings.audit_origin, public_key)


def verifier_key(keystore: KeyStore, settings: Settings) -> str:
    """The published verifier key string (``name+hash+base64``) third parties pin."""
    return audit_verifier(keystore, settings).vkey()


def latest_checkpoint(session: Session, keystore: KeyStore, settings: Settings) -> str:
    """The signed checkpoint of the current tree; signs and stores a new one if it grew."""
    head = read_head(session)
    last = audit_repo.last_checkpoint(session)
    root_hash = head.root_hash
    if last is not None:
        if last.tree_size > head.tree_size:
            raise IntegrityError("the audit log is smaller than its last signed checkpoint")
        if last.tree_size == head.tree_size:
            if bytes(last.root_hash) != root_hash:
                raise IntegrityError("the audit log root differs from its last signed checkpoint")
            publish_tree_size(head.tree_size)
            return str(last.note)
    checkpoint = Checkpoint(settings.audit_origin, head.tree_size, root_hash)
    note = sign_checkpoint(checkpoint, keystore.audit_signing_key(), settings.audit_origin)
    audit_repo.add_checkpoint(session, head.tree_size, root_hash, note, datetime.now(UTC))
    publish_tree_size(head.tree_size)
    return note


# -- entries and proofs ------------------------------------------------------------------


def tree_size(session: Session) -> int:
    return read_head(session).tree_size


def get_entries(session: Session, start: int, end: int) -> list[dict[str, Any]]:
    """Leaves ``[start, end)`` as ``{"index", "leaf"}``; at most 1000, never past the tree."""
    if start < 0 or end <= start:
        raise RequestInvalid("entries need 0 <= start < end")
    end = min(end, start + MAX_ENTRIES, tree_size(session))
    if start >= end:
        return []
    rows = audit_repo.leaf_range(session, start, end, end - start)
    return [{"index": int(i), "leaf": json.loads(bytes(data))} for i, data in rows]


def inclusion_proof(session: Session, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 6962 audit path of ``leaf_index`` in the tree of ``tree_size`` leaves."""
    current = read_head(session).tree_size
    if not 0 <= leaf_index < tree_size <= current:
        raise RequestInvalid("inclusion proof needs 0 <= leaf_index < tree_size <= log size")
    ranges = merkle.inclusion_ranges(leaf_index, tree_size)
    return merkle.proof_from_nodes(ranges, lambda ids: _lookup_nodes(session, ids))


def consistency_proof(session: Session, first: int, second: int) -> list[bytes]:
    """RFC 6962 consistency proof between tree sizes ``first`` and ``second``."""
    current = read_head(session).tree_size
    if not 0 <= first <= second <= current:
        raise RequestInvalid("consistency proof needs 0 <= first <= second <= log size")
    ranges = merkle.consistency_ranges(first, second)
    return merkle.proof_from_nodes(ranges, lambda ids: _lookup_nodes(session, ids))


def inclusion_proof_json(session: Session, leaf_index: int, tree_size: int) -> dict[str, Any]:
    """The inclusion endpoint's (and ``audit prove``'s) JSON object."""
    hashes = inclusion_proof(session, leaf_index, tree_size)
    return {"leaf_index": leaf_index, "tree_size": tree_size, "hashes": [h.hex() for h in hashes]}


def consistency_proof_json(session: Session, first: int, second: int) -> dict[str, Any]:
    """The consistency endpoint's JSON object."""
    hashes = consistency_proof(session, first, second)
    return {"first": first, "second": second, "hashes": [h.hex() for h in hashes]}


def _lookup_nodes(session: Session, ids: set[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    # One primary-key probe per node, OR-ed (compiled once per count, run on the driver
    # cursor: the statement's shape changes with every proof).
    rows = audit_repo.nodes(session, sorted(ids))
    found = {(int(level), int(index)): bytes(h) for level, index, h in rows}
    if len(found) != len(ids):
        raise IntegrityError("the audit log is missing stored subtree hashes")
    return found


# -- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    first_bad_leaf: int | None
    message: str
    tree_size: int = 0
    checkpoints: int = 0


class _Bad(Exception):
    def __init__(self, message: str, leaf: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.leaf = leaf


@dataclass
class _StoredCheckpoint:
    id: int
    tree_size: int
    root_hash: bytes


def verify_log(session: Session, keystore: KeyStore, settings: Settings) -> VerifyReport:
    """Recompute the tree from the stored leaf bytes and check it against every checkpoint.

    1. every stored checkpoint's signature verifies under the audit key and its
       stored size/root agree with the signed note;
    2. leaves are read in index order: no index is missing, each leaf's hash is
       recomputed from its bytes and matches the stored hash, each leaf's
       ``index`` field equals its position;
    3. the root recomputed at each checkpoint's size equals the signed root
       (which is consistency with every checkpoint, the latest included);
    4. the log is not shorter than any checkpoint and the head agrees.
    The first failure is reported, naming ``leaf N`` where a leaf is at fault.

    Safe while appends go on (READ COMMITTED included): checkpoints are read
    before the head, so none is larger than the head read, and only leaves
    below the head's size are read; those never change once committed.
    """
    try:
        checkpoints = _verified_checkpoints(session, audit_verifier(keystore, settings), settings)
    except _Bad as bad:
        return VerifyReport(False, bad.leaf, bad.message, 0, 0)
    head = read_head(session)
    try:
        size, root_hash = _recompute(session, checkpoints, head.tree_size)
        _check_end(session, size, root_hash, head, checkpoints)
    except _Bad as bad:
        return VerifyReport(False, bad.leaf, bad.message, head.tree_size, 0)
    latest = f" (latest at tree size {checkpoints[-1].tree_size})" if checkpoints else ""
    message = (
        f"ok: {size} leaves, root {root_hash.hex()}, consistent with "
        f"{len(checkpoints)} signed checkpoint(s){latest}"
    )
    return VerifyReport(True, None, message, size, len(checkpoints))


def _verified_checkpoints(
    session: Session, verifier: Verifier, settings: Settings
) -> list[_StoredCheckpoint]:
    rows = audit_repo.checkpoints(session)
    out: list[_StoredCheckpoint] = []
    for row in rows:
        where = f"checkpoint {row.id} (tree size {row.tree_size})"
        try:
            signed = open_checkpoint(str(row.note), verifier, settings.audit_origin)
        except CheckpointError as exc:
            raise _Bad(f"{where}: {exc.message}", None) from None
        if signed.tree_size != row.tree_size or signed.root_hash != bytes(row.root_hash):
            raise _Bad(f"{where}: stored size or root differ from the signed note", None)
        if out and signed.tree_size < out[-1].tree_size:
            raise _Bad(f"{where}: smaller than an earlier checkpoint", None)
        out.append(_StoredCheckpoint(int(row.id), signed.tree_size, signed.root_hash))
    return out


def _recompute(
    session: Session, checkpoints: list[_StoredCheckpoint], limit: int
) -> tuple[int, bytes]:
    by_size: dict[int, list[_StoredCheckpoint]] = {}
    for cp in checkpoints:
        by_size.setdefault(cp.tree_size, []).append(cp)
    targets = sorted(by_size)
    compact = merkle.CompactRange()
    last_good = 0
    position = 0
    if 0 in by_size:
        _compare(session, compact, by_size[0], 0)
    # The hot path (read, index check, hashing) runs in taxaddr.audit.scan, on both
    # cores for a large log; results come back in index order, so the first failure
    # found here, and its naming, do not depend on how the work was split.
    with (
        audit_repo.leaf_chunks(session) as read_chunk,
        ChunkScanner(
            lambda start, count: [d for (d,) in read_chunk(start, count)],
            limit,
            targets,
            worker=audit_repo.leaf_reader_spec(session) if PARALLEL else None,
            chunk=scan.CHUNK,
            parallel_min_chunks=scan.PARALLEL_MIN_CHUNKS,
        ) as scanner,
    ):
        for result in scanner:
            if not result.indices_ok:
                _name_first_bad_leaf(session, result.start, result.end)
                raise _Bad(f"leaf {result.start}: index fields out of place", result.start)
            for level, subtree in result.subtrees:
                compact.push_subtree(level, subtree)
                if compact.size in by_size:
                    last_good = _compare(session, compact, by_size[compact.size], last_good)
            position = result.end
    return position, compact.root()


def _name_first_bad_leaf(session: Session, start: int, end: int) -> None:
    """Walk leaves ``[start, end)`` (positions) and raise for the first bad one.

    Runs only after a bulk check failed, so it may be slow: it reads the stored
    index and leaf hash columns too, to say what is wrong.
    """
    rows = audit_repo.leaves_with_hashes(session, start, end - start)
    for position, (index, data, stored_hash) in enumerate(rows, start):
        if index != position:
            raise _Bad(f"leaf {position}: missing (next stored leaf is {index})", position)
        if merkle.leaf_hash(bytes(data)) != bytes(stored_hash):
            raise _Bad(f"leaf {position}: its JSON does not match its leaf hash", position)
        if INDEX_MARKER % position not in bytes(data):
            raise _Bad(f"leaf {position}: its index field is not {position}", position)


def _compare(
    session: Session,
    compact: merkle.CompactRange,
    checkpoints: list[_StoredCheckpoint],
    last_good: int,
) -> int:
    root_hash = compact.root()
    for cp in checkpoints:
        if cp.root_hash != root_hash:
            # Name the leaf if the stored leaf hashes tell which one changed.
            _name_first_bad_leaf(session, last_good, cp.tree_size)
            raise _Bad(
                f"leaf {last_good}: leaves {last_good}..{cp.tree_size - 1} do not hash to the root "
                f"signed in checkpoint {cp.id} (tree size {cp.tree_size})",
                last_good,
            )
    return compact.size


def _check_end(
    session: Session,
    size: int,
    root_hash: bytes,
    head: Head,
    checkpoints: list[_StoredCheckpoint],
) -> None:
    head_size, head_root = head.tree_size, head.root_hash
    signed_max = max((cp for cp in checkpoints), key=lambda cp: cp.tree_size, default=None)
    if signed_max is not None and signed_max.tree_size > size:
        raise _Bad(
            f"leaf {size}: missing (log truncated below signed checkpoint {signed_max.id} "
            f"of tree size {signed_max.tree_size})",
            size,
        )
    if head_size > size:
        raise _Bad(f"leaf {size}: missing (the log head says {head_size} leaves)", size)
    if head_root != root_hash:
        signed = max((cp.tree_size for cp in checkpoints), default=0)
        _name_first_bad_leaf(session, signed, size)
        raise _Bad("log head: its compact range does not match the recomputed tree", None)


# -- entry points for the CLI ------------------------------------------------------------


def checkpoint_note(engine: Engine, keystore: KeyStore, settings: Settings) -> str:
    """``taxaddr audit checkpoint``: the latest signed checkpoint (made if the tree grew)."""
    with write_transaction(engine) as session:
        return latest_checkpoint(session, keystore, settings)


def verify_audit_log(engine: Engine, keystore: KeyStore, settings: Settings) -> VerifyReport:
    """``taxaddr audit verify``: raises :class:`IntegrityError` naming the first bad place."""
    # A read transaction: appends go on meanwhile (see verify_log).
    with Session(engine) as session, session.begin():
        report = verify_log(session, keystore, settings)
    if not report.ok:
        raise IntegrityError(report.message)
    return report


def prove_leaf(
    engine: Engine, keystore: KeyStore, settings: Settings, leaf_index: int, size: int | None
) -> dict[str, Any]:
    """``taxaddr audit prove``: inclusion proof, by default at the latest checkpoint's size."""
    with write_transaction(engine) as session:
        if size is None:
            latest_checkpoint(session, keystore, settings)
            size = tree_size(session)
        return inclusion_proof_json(session, leaf_index, size)
