"""C2SP tlog-witness ``add-checkpoint``: the checks in the spec's order, with its codes.

1. the body parses: ``old <size>`` line, at most 63 base64 hash lines, an empty line,
   a signed checkpoint (400 otherwise);
2. the checkpoint's origin is a log this witness knows (404);
3. a signature by one of that log's keys verifies (403; unknown keys are ignored);
4. the old size is not larger than the checkpoint's (400);
5. atomically with the update: the old size equals the latest cosigned size for
   this origin, 0 if none (409, body: that size, ``text/x.tlog.size``);
6. same size: the root hashes are equal (409); old size 0: the proof is empty;
   otherwise the RFC 6962 consistency proof from the stored root verifies (422);
7. the new (size, root) is persisted, then the cosignature/v1 is returned (200).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import CheckpointError, Verifier, open_checkpoint, parse_body
from taxaddr.audit.cosignature import CosignerKey, note_body
from taxaddr.witness.state import LogState, WitnessState

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024
SIZE_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _fail(status: int, message: str) -> Answer:
    return Answer(status, (message + "\n").encode())


def add_checkpoint(
    raw: bytes,
    logs: Mapping[str, list[Verifier]],
    state: WitnessState,
    key: CosignerKey,
    now: int,
) -> Answer:
    """Answer one ``POST /add-checkpoint`` (steps in the module docstring)."""
    # 1. parse
    if len(raw) > MAX_BODY_BYTES:
        return _fail(400, "request body too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _fail(400, "request body is not UTF-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        return _fail(400, "no empty line before the checkpoint")
    lines = head.split("\n")
    old_match = _OLD.fullmatch(lines[0])
    if old_match is None:
        return _fail(400, "first line must be 'old <size>'")
    old_size = int(old_match.group(1))
    if len(lines) - 1 > MAX_PROOF_LINES:
        return _fail(400, "more than 63 consistency proof lines")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            node = base64.b64decode(line, validate=True)
        except binascii.Error:
            return _fail(400, "a proof line is not base64")
        if len(node) != merkle.HASH_SIZE:
            return _fail(400, "a proof line is not a 32-byte hash")
        proof.append(node)
    try:
        claimed = parse_body(note_body(note))
    except CheckpointError:
        return _fail(400, "malformed checkpoint")
    # 2. a known origin
    verifiers = logs.get(claimed.origin)
    if not verifiers:
        return _fail(404, "unknown log origin")
    # 3. a trusted signature
    checkpoint = None
    for verifier in verifiers:
        try:
            checkpoint = open_checkpoint(note, verifier, claimed.origin)
            break
        except CheckpointError:
            continue
    if checkpoint is None:
        return _fail(403, "no signature by a trusted key of this log")
    # 4. sizes in order
    if old_size > checkpoint.tree_size:
        return _fail(400, "old size is larger than the checkpoint's")
    with state.transaction() as known:
        # 5. the witness's own view
        current = known.get(checkpoint.origin, LogState(0, merkle.EMPTY_ROOT))
        if old_size != current.size:
            return Answer(409, f"{current.size}\n".encode(), SIZE_TYPE)
        # 6. consistency
        if old_size == checkpoint.tree_size:
            if current.size and checkpoint.root_hash != current.root_hash:
                return Answer(409, f"{current.size}\n".encode(), SIZE_TYPE)
            if proof:
                return _fail(422, "a proof between equal sizes must be empty")
        elif old_size == 0:
            if proof:
                return _fail(422, "the proof must be empty when the old size is 0")
        elif not merkle.verify_consistency(
            old_size, checkpoint.tree_size, current.root_hash, checkpoint.root_hash, proof
        ):
            return _fail(422, "the consistency proof does not verify")
        # 7. persist, then cosign
        known[checkpoint.origin] = LogState(checkpoint.tree_size, checkpoint.root_hash)
    return Answer(200, key.cosign(note_body(note), now).encode())  # the text the log signed
