"""Offline proofs: one file that shows a disclosure's leaf is in the log, checkable by a
requester, a court or the taxpayer without access to the service.

The file is ``{"leaf", "leaf_index", "checkpoint_note", "inclusion_proof"}``: the leaf
object (its RFC 8785 canonical JSON is what the leaf hash covers), its index, the
checkpoint as a signed note carrying the log's signature and the witnesses'
cosignatures, and the RFC 6962 audit path (hex) to that checkpoint's root.

:func:`verify_offline_proof` checks it in numbered steps, trusting only the keys it is
given:
1. the file has the four members with their types;
2. the checkpoint note verifies under the log's key (its origin is the key's name);
3. at least ``quorum`` of the given witnesses cosigned that very checkpoint
   (tlog-cosignature/v1; other signature lines are ignored; a witness key given
   twice counts once, also under two names: a v1 cosignature does not commit to the
   name, so a line relabelled with the other name would verify);
4. the leaf's own ``index`` is ``leaf_index``, and its canonical JSON hashed as an RFC
   6962 leaf, with the audit path, gives the checkpoint's root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy.orm import Session

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import CheckpointError, Verifier, open_checkpoint
from taxaddr.audit.cosignature import Cosigner, cosignature_lines, note_body
from taxaddr.audit.service import inclusion_proof, latest_checkpoint
from taxaddr.audit.witnessing import cosigned_note
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.db.repositories import witnesses as witness_repo
from taxaddr.errors import IntegrityError, NotFound, WitnessQuorumPending


def disclosure_proof(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    disclosure_id: str,
    *,
    requester_id: str | None,
) -> dict[str, Any]:
    """The offline proof of a disclosure; ``requester_id`` (not None) must be the one who
    received it, else it is not found (no hint that it exists). Call in a write
    transaction: with no quorum the latest checkpoint may be signed now."""
    leaf_index = audit_repo.leaf_of_disclosure(session, disclosure_id)
    data = None if leaf_index is None else audit_repo.leaf_json(session, leaf_index)
    if leaf_index is None or data is None:
        raise NotFound("no disclosure with that id")
    leaf = json.loads(data)
    if requester_id is not None and leaf.get("requester_id") != requester_id:
        raise NotFound("no disclosure with that id")
    quorum = settings.witness_quorum
    if quorum == 0:
        note = latest_checkpoint(session, keystore, settings)
    else:
        sizes = witness_repo.cosigned_sizes(session, leaf_index + 1, quorum)
        stored = audit_repo.checkpoint_note_of_size(session, sizes[-1]) if sizes else None
        if stored is None:
            raise WitnessQuorumPending(
                f"no checkpoint covering this disclosure has {quorum} witness cosignatures yet"
            )
        note = stored
    size = int(note_body(note).split("\n")[1])
    return {
        "leaf": leaf,
        "leaf_index": leaf_index,
        "checkpoint_note": cosigned_note(session, note),
        "inclusion_proof": [h.hex() for h in inclusion_proof(session, leaf_index, size)],
    }


@dataclass(frozen=True)
class ProofCheck:
    leaf_index: int
    tree_size: int
    witnesses: tuple[str, ...]


def verify_offline_proof(
    document: object, log: Verifier, witnesses: list[Cosigner], quorum: int
) -> ProofCheck:
    """Raise :class:`IntegrityError` naming the first failed step (module docstring)."""
    # 1. shape
    if not isinstance(document, dict) or set(document) != {
        "leaf",
        "leaf_index",
        "checkpoint_note",
        "inclusion_proof",
    }:
        raise IntegrityError("proof file: not {leaf, leaf_index, checkpoint_note, inclusion_proof}")
    leaf, index = document["leaf"], document["leaf_index"]
    note, path = document["checkpoint_note"], document["inclusion_proof"]
    if not (
        isinstance(leaf, dict)
        and isinstance(index, int)
        and not isinstance(index, bool)
        and isinstance(note, str)
        and isinstance(path, list)
        and all(isinstance(h, str) for h in path)
    ):
        raise IntegrityError("proof file: a member has the wrong type")
    try:
        hashes = [bytes.fromhex(h) for h in path]
    except ValueError:
        raise IntegrityError("proof file: inclusion_proof holds a non-hex hash") from None
    # 2. the log's signature
    try:
        checkpoint = open_checkpoint(note, log, log.name)
    except CheckpointError as exc:
        raise IntegrityError(f"checkpoint: {exc.message}") from None
    # 3. the witnesses' cosignatures on that checkpoint
    body = note_body(note)
    cosigned: list[str] = []
    distinct = {w.raw_key: w for w in witnesses}  # one public key is one witness
    for witness in distinct.values():
        for line in cosignature_lines(note):
            try:
                if witness.verify(body, line) is not None:
                    cosigned.append(witness.name)
                    break
            except CheckpointError as exc:
                raise IntegrityError(f"witness {witness.name}: {exc.message}") from None
    if len(cosigned) < quorum:
        raise IntegrityError(
            f"checkpoint: cosigned by {len(cosigned)} of the given witnesses, {quorum} required"
        )
    # 4. the leaf under the checkpoint's root
    if leaf.get("index") != index:
        raise IntegrityError("leaf: its index field is not leaf_index")
    try:
        canonical = rfc8785.dumps(leaf)
    except rfc8785.CanonicalizationError as exc:  # inf/NaN, unsafe integers, lone surrogates
        raise IntegrityError(f"leaf: not canonical JSON ({exc})") from None
    leaf_hash = merkle.leaf_hash(canonical)
    if not merkle.verify_inclusion(
        index, checkpoint.tree_size, leaf_hash, hashes, checkpoint.root_hash
    ):
        raise IntegrityError(
            f"leaf {index}: not included under the checkpoint of size {checkpoint.tree_size}"
        )
    return ProofCheck(index, checkpoint.tree_size, tuple(cosigned))
