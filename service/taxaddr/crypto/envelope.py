"""Envelope encryption: per-record AES-256-GCM data keys wrapped by the KEK.

A sealed field is ``nonce(12) || ciphertext+tag``. The associated data binds the
ciphertext to its record and field (see :func:`aad`), so a ciphertext copied
into another record or column fails to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from taxaddr.errors import IntegrityError

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
ENVELOPE_VERSION = 1


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_BYTES)


def aad(table: str, record_id: str, field: str, version: int = ENVELOPE_VERSION) -> bytes:
    """Associated data: envelope version, table, record id and field name."""
    return f"taxaddr/v{version}/{table}/{record_id}/{field}".encode()


def seal(data_key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, associated)


def seal_with(cipher: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """Like :func:`seal` with a cipher already built for the data key (hot paths)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, plaintext, associated)


def open_sealed(data_key: bytes, blob: bytes, associated: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise IntegrityError("sealed value too short")
    try:
        return AESGCM(data_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)
    except InvalidTag as exc:
        raise IntegrityError("sealed value failed authentication") from exc


def keyed_hash(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-256: blind index of a normalized TIN, or a subject pseudonym."""
    return hmac.new(key, message, hashlib.sha256).digest()


def subject_ref(pseudonym_key: bytes, normalized_tin: str) -> str:
    """The keyed pseudonym of a TIN used in policy input and audit leaves (hex)."""
    return keyed_hash(pseudonym_key, b"subject-ref/v1:" + normalized_tin.encode()).hex()
