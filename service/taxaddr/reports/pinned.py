"""The first steps of verifying a signed document pinned to a signed checkpoint (the
transparency report, a stay's impact list): 1. the report key's signature over the
file's exact bytes; 2. the document inside it; 3. the signed checkpoint it cites, with
the tree size and root it states. What follows — the log's leaves hashing to that root
and the document recomputed from them — is each document's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taxaddr.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from taxaddr.audit.service import audit_verifier
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.errors import UsageError
from taxaddr.reports import signing


def cite(keystore: KeyStore, settings: Settings, note: str) -> tuple[Checkpoint, dict[str, Any]]:
    """A signed checkpoint ``note`` opened, and the ``checkpoint`` member that cites it
    in a document (``tree_size``, ``root_hash`` hex, ``signed_note``)."""
    checkpoint = open_checkpoint(note, audit_verifier(keystore, settings), settings.audit_origin)
    cited = {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash.hex(),
        "signed_note": note,
    }
    return checkpoint, cited


@dataclass(frozen=True)
class Pinned:
    doc: dict[str, Any]
    checkpoint: Checkpoint


def open_pinned(
    keystore: KeyStore,
    settings: Settings,
    data: bytes,
    signature_text: str,
    parse: Callable[[bytes], dict[str, Any]],
) -> Pinned | str:
    """The document and its checkpoint, or the first problem found (one line)."""
    # 1. signature
    if not signing.verify(data, signature_text, keystore.report_signing_key().public_key()):
        return "signature: the .sig file is not the report key's signature over this file"
    # 2. the document, 3. the checkpoint it cites
    try:
        doc = parse(data)
        cited = doc["checkpoint"]
        checkpoint = open_checkpoint(
            str(cited["signed_note"]), audit_verifier(keystore, settings), settings.audit_origin
        )
        stated = (cited["tree_size"], cited["root_hash"])
    except (UsageError, KeyError, TypeError, ValueError) as exc:
        return f"format: {exc}"
    except CheckpointError as exc:
        return f"checkpoint: {exc.message}"
    if (checkpoint.tree_size, checkpoint.root_hash.hex()) != stated:
        return "checkpoint: differs from the signed note"
    return Pinned(doc, checkpoint)
