"""Sealing and opening one address record (envelope encryption).

Each record has its own random AES-256 data key, wrapped by the current KEK.
``name_ct`` and ``address_ct`` are AES-256-GCM ciphertexts whose associated
data binds the envelope version, table, record id, blind index, tax period,
``as_of`` and field name: a ciphertext moved to another row or column, or a row
whose plain columns were edited, fails to decrypt (fail closed). The KEK
version is deliberately *not* in the associated data so that rotating the KEK
re-wraps data keys without touching ciphertexts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from taxaddr.crypto import envelope
from taxaddr.crypto.keystore import KeyStore
from taxaddr.errors import IntegrityError
from taxaddr.store.models import ADDRESS_TABLE

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
NAME_FIELD = "name"
ADDRESS_FIELD = "address"


class AddressFields(NamedTuple):
    street: str
    city: str
    state: str
    zip: str

    def to_bytes(self) -> bytes:
        return _encode_json([self.street, self.city, self.state, self.zip]).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> AddressFields:
        try:
            street, city, state, zip_code = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise IntegrityError("decrypted address has an unexpected shape") from exc
        return cls(str(street), str(city), str(state), str(zip_code))


@dataclass(frozen=True, slots=True)
class SealedRecord:
    kek_version: int
    wrapped_key: bytes
    name_ct: bytes
    address_ct: bytes


class BlindIndexer:
    """HMAC-SHA-256 of a normalized TIN under the blind-index key."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, normalized_tin: str) -> bytes:
        h = self._base.copy()  # the keyed inner/outer state is computed once
        h.update(normalized_tin.encode())
        return h.digest()


def record_aad(
    record_id: int, blind_index: bytes, tax_period: str, as_of: date, field: str
) -> bytes:
    return envelope.aad(ADDRESS_TABLE, _binding(record_id, blind_index, tax_period, as_of), field)


def _binding(record_id: int, blind_index: bytes, tax_period: str, as_of: date) -> str:
    return f"{record_id}/{blind_index.hex()}/{tax_period}/{as_of.isoformat()}"


def seal_record(
    keystore: KeyStore,
    kek_version: int,
    *,
    record_id: int,
    blind_index: bytes,
    tax_period: str,
    as_of: date,
    name: str,
    address: AddressFields,
) -> SealedRecord:
    # One call to the OS CSPRNG for the data key and both nonces (hot path).
    material = os.urandom(envelope.DATA_KEY_BYTES + 2 * envelope.NONCE_BYTES)
    data_key = material[: envelope.DATA_KEY_BYTES]
    nonce_name = material[envelope.DATA_KEY_BYTES : -envelope.NONCE_BYTES]
    nonce_address = material[-envelope.NONCE_BYTES :]
    cipher = AESGCM(data_key)
    binding = _binding(record_id, blind_index, tax_period, as_of)
    name_ct = nonce_name + cipher.encrypt(
        nonce_name, name.encode(), envelope.aad(ADDRESS_TABLE, binding, NAME_FIELD)
    )
    address_ct = nonce_address + cipher.encrypt(
        nonce_address, address.to_bytes(), envelope.aad(ADDRESS_TABLE, binding, ADDRESS_FIELD)
    )
    return SealedRecord(kek_version, keystore.wrap_with(kek_version, data_key), name_ct, address_ct)


def open_field(cipher: AESGCM, blob: bytes, associated: bytes) -> bytes:
    """Decrypt one sealed field with a cipher for the record's data key."""
    if len(blob) < envelope.NONCE_BYTES + 16:
        raise IntegrityError("sealed value too short")
    try:
        nonce, body = blob[: envelope.NONCE_BYTES], blob[envelope.NONCE_BYTES :]
        return cipher.decrypt(nonce, body, associated)
    except InvalidTag as exc:
        raise IntegrityError("a stored address record failed authentication") from exc


class OpenedRecord:
    """A record whose data key is unwrapped; fields are decrypted on demand."""

    __slots__ = ("_binding", "_cipher")

    def __init__(self, keystore: KeyStore, row: StoredRow) -> None:
        data_key = keystore.unwrap(row.kek_version, row.wrapped_key)
        self._cipher = AESGCM(data_key)
        self._binding = (row.id, row.blind_index, row.tax_period, row.as_of)

    def _aad(self, field: str) -> bytes:
        return record_aad(*self._binding, field)

    def name(self, blob: bytes) -> str:
        return open_field(self._cipher, blob, self._aad(NAME_FIELD)).decode()

    def address(self, blob: bytes) -> AddressFields:
        return AddressFields.from_bytes(open_field(self._cipher, blob, self._aad(ADDRESS_FIELD)))


@dataclass(frozen=True, slots=True)
class StoredRow:
    id: int
    blind_index: bytes
    tax_period: str
    as_of: date
    kek_version: int
    wrapped_key: bytes
    name_ct: bytes
    address_ct: bytes
