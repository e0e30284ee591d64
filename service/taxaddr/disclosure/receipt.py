"""Disclosure receipts: a compact JWS (EdDSA) by the service's audit key.

The receipt binds the request id, case jti, audit leaf index and leaf hash and
the time, so a requester can later prove which logged disclosure answered
which request. Signing uses ``cryptography``'s Ed25519; only the JWS framing
(base64url of header and payload) is done here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

RECEIPT_TYP = "taxaddr-receipt+jws"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "taxaddr-audit-" + hashlib.sha256(raw).hexdigest()[:16]


class ReceiptSigner:
    """Signs receipts; the header is encoded once."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        header = {"alg": "EdDSA", "kid": key_id(key.public_key()), "typ": RECEIPT_TYP}
        self._header = _b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())

    def sign(self, claims: dict[str, Any]) -> str:
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signing_input = f"{self._header}.{payload}".encode("ascii")
        return f"{self._header}.{payload}.{_b64(self._key.sign(signing_input))}"


def verify_receipt(receipt: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Verify a receipt and return its claims; raises ValueError when it does not verify."""
    parts = receipt.split(".")
    if len(parts) != 3:
        raise ValueError("receipt must have three segments")
    header = json.loads(_unb64(parts[0]))
    if header.get("alg") != "EdDSA" or header.get("typ") != RECEIPT_TYP:
        raise ValueError("unexpected receipt header")
    try:
        public_key.verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise ValueError("receipt signature does not verify") from None
    claims: dict[str, Any] = json.loads(_unb64(parts[1]))
    return claims
