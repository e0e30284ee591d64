"""Detached Ed25519 signatures over a report file's exact bytes.

The ``.sig`` file is one line: the 64-byte signature in standard base64 (the
same text the API sends in ``X-Signature``).
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SIGNATURE_BYTES = 64


def sign(data: bytes, key: Ed25519PrivateKey) -> str:
    """The standard-base64 Ed25519 signature of ``data`` (no newline)."""
    return base64.b64encode(key.sign(data)).decode("ascii")


def signature_file_text(signature: str) -> bytes:
    return (signature + "\n").encode("ascii")


def verify(data: bytes, signature_text: str, public_key: Ed25519PublicKey) -> bool:
    """True only if ``signature_text`` is one base64 Ed25519 signature over ``data``."""
    text = signature_text.strip()
    if not text or "\n" in text:
        return False
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(raw, data)
    except InvalidSignature:
        return False
    return True


def signature_path(path: Path) -> Path:
    """Where a report file's detached signature goes: ``FILE.sig``."""
    return path.with_name(path.name + ".sig")


def write_signed(out: Path, data: bytes, signature: str) -> None:
    """Write ``out`` and ``out.sig``, each atomically (a reader never sees half a file)."""
    _write_atomically(out, data)
    _write_atomically(signature_path(out), signature_file_text(signature))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
