"""C2SP tlog-cosignature/v1 (Ed25519), pure: keys, vkeys, signing and verifying.

A cosignature is a signed-note signature line on a checkpoint::

    \u2014 <cosigner name> base64(key ID (4) || u64 timestamp, big-endian (8) || Ed25519 (64))

over the message ``"cosignature/v1\\n" || "time <timestamp>\\n" || <checkpoint body>``.
The key ID is ``SHA-256(name || "\\n" || 0x04 || public key)[:4]``; a cosigner's
verifier key (vkey) is ``<name>+<key ID, hex>+base64(0x04 || public key)``
(https://c2sp.org/tlog-cosignature, https://c2sp.org/signed-note). The private key
file holds ``PRIVATE+KEY+<name>+<key ID, hex>+base64(0x04 || seed)`` (the vkey's
shape, as Go's note package writes signer keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from taxaddr.audit.checkpoint import EM_DASH, CheckpointError

ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
PRIVATE_PREFIX = "PRIVATE+KEY+"
_NAME = re.compile(r"[^\s+\u2014]+")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """``SHA-256(name || "\\n" || 0x04 || public key)[:4]``."""
    if not _NAME.fullmatch(name):
        raise CheckpointError("a cosigner name has no whitespace, '+' or em dash")
    material = name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + _raw(public_key)
    return hashlib.sha256(material).digest()[:4]


def signed_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header line, time line, the whole checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointError("cosignature timestamp out of range")
    return (HEADER + f"time {timestamp}\n" + body).encode()


@dataclass(frozen=True)
class Cosigner:
    """A named cosigner public key (what a log or a verifier trusts)."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> Cosigner:
        return cls(name, key_id(name, public_key), public_key)

    @property
    def raw_key(self) -> bytes:
        """The 32-byte public key: cosignature/v1 does not commit to the name, so one key
        under two names is one cosigner (a line relabelled with the other name verifies)."""
        return _raw(self.public_key)

    def vkey(self) -> str:
        blob = bytes([ALG_COSIGNATURE_V1]) + _raw(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(blob).decode()}"

    def verify(self, body: str, signature_line: str) -> int | None:
        """The cosignature's timestamp if ``signature_line`` is this cosigner's valid
        cosignature on ``body``; None if the line is another key's (or not a v1
        cosignature by this key); raises on a line of this key that does not verify."""
        parts = signature_line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or parts[1] != self.name:
            return None
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            return None
        if len(blob) != 4 + 8 + 64 or blob[:4] != self.key_id:
            return None
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        try:
            self.public_key.verify(blob[12:], signed_message(body, timestamp))
        except InvalidSignature:
            raise CheckpointError(f"cosignature by {self.name} is invalid") from None
        return int(timestamp)


def parse_vkey(text: str) -> Cosigner:
    """A cosigner vkey (type 0x04); its key ID must match its key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a cosigner vkey is name+keyid+key")
    name, id_hex, key_b64 = parts
    try:
        blob = base64.b64decode(key_b64, validate=True)
        declared = bytes.fromhex(id_hex)
    except (binascii.Error, ValueError):
        raise CheckpointError("cosigner vkey is not valid hex/base64") from None
    if len(blob) != 33 or blob[0] != ALG_COSIGNATURE_V1 or len(declared) != 4:
        raise CheckpointError("not a cosignature/v1 (type 0x04) Ed25519 vkey")
    cosigner = Cosigner.from_public_key(name, Ed25519PublicKey.from_public_bytes(blob[1:]))
    if cosigner.key_id != declared:
        raise CheckpointError("cosigner vkey's key ID does not match its key")
    return cosigner


@dataclass(frozen=True)
class CosignerKey:
    """A cosigner's private key."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner.from_public_key(self.name, self.private_key.public_key())

    @classmethod
    def generate(cls, name: str) -> CosignerKey:
        key = cls(name, Ed25519PrivateKey.generate())
        key_id(name, key.private_key.public_key())  # checks the name
        return key

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (with its newline) of a cosignature/v1 on ``body``."""
        signature = self.private_key.sign(signed_message(body, timestamp))
        blob = self.cosigner.key_id + struct.pack(">Q", timestamp) + signature
        return f"{EM_DASH} {self.name} {base64.b64encode(blob).decode()}\n"

    def private_text(self) -> str:
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        blob = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
        return f"{PRIVATE_PREFIX}{self.name}+{self.cosigner.key_id.hex()}+{blob}\n"

    @classmethod
    def from_private_text(cls, text: str) -> CosignerKey:
        if not text.startswith(PRIVATE_PREFIX):
            raise CheckpointError("not a witness private key file")
        parts = text.strip()[len(PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("witness private key is name+keyid+key")
        name, id_hex, key_b64 = parts
        try:
            blob = base64.b64decode(key_b64, validate=True)
        except binascii.Error:
            raise CheckpointError("witness private key is not base64") from None
        if len(blob) != 33 or blob[0] != ALG_COSIGNATURE_V1:
            raise CheckpointError("witness private key is not a cosignature/v1 Ed25519 key")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(blob[1:]))
        if key.cosigner.key_id.hex() != id_hex:
            raise CheckpointError("witness private key's key ID does not match its key")
        return key


def cosignature_lines(note: str) -> list[str]:
    """The signature lines of a signed note (without their newlines)."""
    _text, sep, signatures = note.rpartition("\n\n")
    if not sep:
        return []
    return [line for line in signatures.split("\n") if line]


def note_body(note: str) -> str:
    """The signed note's text (the checkpoint body, with its final newline)."""
    text, sep, _ = note.rpartition("\n\n")
    if not sep:
        raise CheckpointError("note has no signature block")
    return text + "\n"
