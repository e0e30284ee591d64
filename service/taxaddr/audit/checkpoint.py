"""C2SP checkpoints in the signed-note format, Ed25519.

A checkpoint (https://github.com/C2SP/C2SP/blob/main/tlog-checkpoint.md) is the
note body::

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n

followed by a blank line and one signature line per signer
(https://github.com/C2SP/C2SP/blob/main/signed-note.md)::

    \u2014 <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\\n

The key hash is the first four bytes of ``SHA-256(name || "\\n" || 0x01 || public
key)``. A verifier key is published as the string
``<name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>`` (the format of
Go's ``golang.org/x/mod/sumdb/note``), which is all a third party needs.

Verification is done in numbered steps, and claims are read only after the
signature checked out (``open_checkpoint``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from taxaddr.errors import IntegrityError

EM_DASH = "\u2014"
ALG_ED25519 = 0x01
MAX_NOTE_BYTES = 64 * 1024
_NAME = re.compile(r"[^\s+\u2014]+")  # no whitespace, no plus sign, no em dash
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class CheckpointError(IntegrityError):
    """A note or checkpoint failed to parse or verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode()]
        return "".join(line + "\n" for line in (*lines, *self.extensions))


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key as signed notes identify it."""

    name: str
    key_hash: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Verifier:
        _check_name(name)
        return cls(name, key_hash(name, public_key), public_key)

    def vkey(self) -> str:
        """The published verifier key string ``name+hash+base64(0x01||key)``."""
        blob = bytes([ALG_ED25519]) + _raw(self.public_key)
        return f"{self.name}+{self.key_hash.hex()}+{base64.b64encode(blob).decode()}"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise CheckpointError("key name must be non-empty without spaces, '+' or em dash")


def key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """First four bytes of SHA-256(name || "\\n" || 0x01 || public key)."""
    material = name.encode() + b"\n" + bytes([ALG_ED25519]) + _raw(public_key)
    return hashlib.sha256(material).digest()[:4]


def parse_vkey(text: str) -> Verifier:
    """Parse a verifier key string and check that its key hash matches its key."""
    parts = text.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise CheckpointError("verifier key must be name+hash+key")
    name, hash_hex, key_b64 = parts
    _check_name(name)
    try:
        blob = base64.b64decode(key_b64, validate=True)
        declared = bytes.fromhex(hash_hex)
    except (binascii.Error, ValueError):
        raise CheckpointError("verifier key is not valid hex/base64") from None
    if len(blob) != 33 or blob[0] != ALG_ED25519 or len(declared) != 4:
        raise CheckpointError("verifier key is not an Ed25519 key")
    verifier = Verifier.from_public_key(name, Ed25519PublicKey.from_public_bytes(blob[1:]))
    if verifier.key_hash != declared:
        raise CheckpointError("verifier key hash does not match its key")
    return verifier


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey, name: str) -> str:
    """The signed note text of ``checkpoint``, signed under key name ``name``."""
    _check_name(checkpoint.origin)
    body = checkpoint.body()
    verifier = Verifier.from_public_key(name, private_key.public_key())
    signature = private_key.sign(body.encode())
    blob = base64.b64encode(verifier.key_hash + signature).decode()
    return f"{body}\n{EM_DASH} {name} {blob}\n"


def open_checkpoint(note: str, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and return its claims.

    1. parse the note into text and signature lines;
    2. select the signature line of ``verifier`` (by name and key hash);
    3. verify the Ed25519 signature over the text;
    4. only then parse the checkpoint body and check its origin.
    """
    # 1. parse
    if len(note.encode()) > MAX_NOTE_BYTES or not note.endswith("\n"):
        raise CheckpointError("note is too large or does not end with a newline")
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not text:
        raise CheckpointError("note has no signature block")
    text += "\n"
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        raise CheckpointError("note holds control characters")
    # 2. select the signature line made with this key
    matching: list[bytes] = []
    for line in signatures.removesuffix("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise CheckpointError("malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise CheckpointError("signature is not valid base64") from None
        if len(blob) < 5:
            raise CheckpointError("signature is too short")
        if parts[1] == verifier.name and blob[:4] == verifier.key_hash:
            matching.append(blob[4:])
    if not matching:
        raise CheckpointError("no signature by the expected key")
    # 3. verify
    try:
        for signature in matching:
            verifier.public_key.verify(signature, text.encode())
    except InvalidSignature:
        raise CheckpointError("checkpoint signature is invalid") from None
    # 4. read the claims
    checkpoint = parse_body(text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError("checkpoint origin is not the expected log")
    return checkpoint


def parse_body(text: str) -> Checkpoint:
    """Parse a checkpoint body (origin, size, base64 root, optional extension lines)."""
    lines = text.removesuffix("\n").split("\n")
    if len(lines) < 3 or not lines[0] or any(not line for line in lines):
        raise CheckpointError("checkpoint body must have origin, size and root lines")
    if not _DECIMAL.fullmatch(lines[1]):
        raise CheckpointError("checkpoint tree size is not a decimal number")
    try:
        root_hash = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise CheckpointError("checkpoint root hash is not base64") from None
    if len(root_hash) != 32:
        raise CheckpointError("checkpoint root hash is not 32 bytes")
    return Checkpoint(lines[0], int(lines[1]), root_hash, tuple(lines[3:]))
