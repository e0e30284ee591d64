"""The service's public keys for third parties (``GET /v1/keys``, ``taxaddr keys public``).

With these three values alone anyone can check what the service signs:

* ``audit_vkey``: the C2SP signed-note verifier key of the audit log
  (``<origin>+<key hash>+<base64(0x01 || Ed25519 public key)>``), for checkpoints;
* ``receipt_jwk``: the RFC 7517 / RFC 8037 public JWK (OKP, Ed25519) of the key that
  signs disclosure receipts (compact JWS, ``alg`` EdDSA); its ``kid`` is the
  receipts' header ``kid``;
* ``report_public_key_pem``: the Ed25519 public key (SubjectPublicKeyInfo PEM) that
  verifies a signed report's ``FILE.sig`` over FILE's exact bytes.

Only public halves leave the key store.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from taxaddr.audit.service import verifier_key
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore, ed25519_jwk
from taxaddr.disclosure.receipt import key_id


def public_keys(keystore: KeyStore, settings: Settings) -> dict[str, Any]:
    """``{"audit_vkey", "receipt_jwk", "report_public_key_pem"}``."""
    receipt_key = keystore.audit_signing_key().public_key()
    report_key = keystore.report_signing_key().public_key()
    report_pem = report_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "audit_vkey": verifier_key(keystore, settings),
        "receipt_jwk": ed25519_jwk(receipt_key, key_id(receipt_key)),
        "report_public_key_pem": report_pem.decode("ascii"),
    }
