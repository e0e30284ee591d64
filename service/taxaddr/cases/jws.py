"""The small, strict subset of JOSE that case references use (RFC 7515/7517/7518/8037).

Only compact JWS with ``EdDSA`` (Ed25519) or ``ES256`` (ECDSA P-256, SHA-256).
The primitives come from PyCA: PyNaCl (libsodium) verifies Ed25519, about 1.5x
faster than ``cryptography`` on this machine type; ``cryptography`` does P-256.
Nothing here decides trust: :mod:`taxaddr.cases.verify` does, in numbered steps.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import lru_cache
from typing import Any

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALG_EDDSA = "EdDSA"
ALG_ES256 = "ES256"
ALLOWED_ALGS = frozenset({ALG_EDDSA, ALG_ES256})
SIGNATURE_BYTES = 64  # Ed25519, and ES256 as raw r || s (RFC 7518 section 3.4)
P256_COORD_BYTES = 32

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}


class JoseFormatError(ValueError):
    """Input that is not the strict encoding we accept. Carries no input bytes."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2).

    Refuses padding, any character outside the alphabet, impossible lengths and
    non-canonical encodings (unused trailing bits set), so that one token has
    exactly one spelling and no byte of it can change without changing its meaning.
    """
    try:
        data = segment.encode("ascii")
    except UnicodeEncodeError:
        raise JoseFormatError("not strict base64url") from None
    return b64url_decode_bytes(data)


_B64URL_ALPHABET_BYTES = _B64URL_ALPHABET.encode("ascii")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
# The unused low bits of the last character, by length mod 4 (RFC 4648 section 3.5).
_UNUSED_BITS = (0, 0, 0b1111, 0b11)


def b64url_decode_bytes(segment: bytes) -> bytes:
    """:func:`b64url_decode` of ASCII bytes (the verifier's hot path: no regex, no str)."""
    remainder = len(segment) % 4
    # Deleting every alphabet byte leaves nothing iff the segment is all alphabet
    # (so '+', '/', '=' and whitespace are refused before the standard decoder sees them).
    if remainder == 1 or segment.translate(None, _B64URL_ALPHABET_BYTES):
        raise JoseFormatError("not strict base64url")
    try:
        data = binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + _PADDING[remainder], strict_mode=True
        )
    except (binascii.Error, ValueError) as exc:
        raise JoseFormatError("not strict base64url") from exc
    unused_bits = _UNUSED_BITS[remainder]
    if unused_bits and _B64URL_VALUE[chr(segment[-1])] & unused_bits:
        raise JoseFormatError("non-canonical base64url")
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # a later member overwrote an earlier one of the same name
        raise JoseFormatError("duplicate JSON member")
    return obj


def _no_constants(name: str) -> Any:
    raise JoseFormatError(f"JSON constant {name} is not allowed")


_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
)


def strict_json_object(data: bytes) -> dict[str, Any]:
    """UTF-8 JSON that is an object, with no duplicate member names and no NaN/Infinity."""
    try:
        value = _STRICT_DECODER.decode(data.decode("utf-8"))
    except JoseFormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JoseFormatError("not UTF-8 JSON") from exc
    if not isinstance(value, dict):
        raise JoseFormatError("not a JSON object")
    return value


def compact_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- signing (the dev issuer and tests) -------------------------------------------------


def sign_compact(
    header: dict[str, Any],
    payload: dict[str, Any],
    key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
) -> str:
    """Compact JWS over ``header`` and ``payload`` with an Ed25519 or P-256 private key."""
    signing_input = (
        b64url_encode(compact_json(header)) + "." + b64url_encode(compact_json(payload))
    ).encode("ascii")
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(signing_input)
    else:
        if not isinstance(key.curve, ec.SECP256R1):
            raise TypeError("ES256 needs a P-256 key")
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(P256_COORD_BYTES, "big") + s.to_bytes(P256_COORD_BYTES, "big")
    return signing_input.decode("ascii") + "." + b64url_encode(signature)


# -- verification primitives -------------------------------------------------------------


@lru_cache(maxsize=256)
def _ed25519_verifier(public_key: bytes) -> nacl.signing.VerifyKey:
    # Pure function of the key bytes: caching it caches no trust decision.
    return nacl.signing.VerifyKey(public_key)


@lru_cache(maxsize=256)
def _p256_verifier(public_key: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)


def signature_valid(alg: str, public_key: bytes, signing_input: bytes, signature: bytes) -> bool:
    """True only if ``signature`` is valid for ``signing_input`` under ``public_key``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    if alg == ALG_EDDSA:
        try:
            _ed25519_verifier(public_key).verify(signing_input, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            return False
        return True
    if alg == ALG_ES256:
        r = int.from_bytes(signature[:P256_COORD_BYTES], "big")
        s = int.from_bytes(signature[P256_COORD_BYTES:], "big")
        try:
            verifier = _p256_verifier(public_key)
            verifier.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True
    return False


def p256_point(x: bytes, y: bytes) -> bytes:
    """The uncompressed SEC1 point of (x, y); raises ValueError if not on P-256."""
    if len(x) != P256_COORD_BYTES or len(y) != P256_COORD_BYTES:
        raise ValueError("P-256 coordinates are 32 bytes each")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    key = numbers.public_key()  # checks the point is on the curve
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
