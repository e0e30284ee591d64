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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from taxaddr.crypto import envelope
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.schema import ADDRESS_TABLE
from taxaddr.errors import IntegrityError

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
NAME_FIELD = "name"
ADDRESS_FIELD = "address"


class AddressFields(NamedTuple):
    street: str
    city: str
    state: str
    zip: str

    def to_bytes(self) -> bytes:
        return address_bytes(self.street, self.city, self.state, self.zip)

    @classmethod
    def from_bytes(cls, raw: bytes) -> AddressFields:
        try:
            street, city, state, zip_code = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise IntegrityError("decrypted address has an unexpected shape") from exc
        return cls(str(street), str(city), str(state), str(zip_code))


def address_bytes(street: str, city: str, state: str, zip_code: str) -> bytes:
    """The sealed form of an address: a compact JSON array (UTF-8).

    Hot path: printable ASCII without ``"`` or ``\\`` needs no JSON escaping, so the
    common row is formatted directly; anything else goes through the JSON encoder
    (tests check that both give the same bytes).
    """
    text = street + city + state + zip_code
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'["{street}","{city}","{state}","{zip_code}"]'.encode()
    return _encode_json([street, city, state, zip_code]).encode()


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


# Per record: a data key and the two nonces, sliced from one CSPRNG call per batch.
_MATERIAL_BYTES = envelope.DATA_KEY_BYTES + 2 * envelope.NONCE_BYTES
_NONCE_NAME = envelope.DATA_KEY_BYTES
_NONCE_ADDRESS = _NONCE_NAME + envelope.NONCE_BYTES

# (record_id, blind_index, tax_period, as_of as ISO text, name UTF-8, address_bytes(...))
SealInput = tuple[int, bytes, str, str, bytes, bytes]
# One record's fresh key material: (data key wrapped by the KEK, an AES-256-GCM cipher
# under the data key, the name's nonce, the address's nonce).
RecordKey = tuple[bytes, AESGCM, bytes, bytes]


class BatchSealer:
    """Seals many records under one KEK version: the importer's hot path.

    Exactly what :func:`seal_record` does, per record: a fresh random data key
    (never shared), two fresh random nonces, AES-256-GCM with the same
    associated data, the data key wrapped by the keystore. The only batching is
    of the CSPRNG call: one ``os.urandom`` per batch, cut into disjoint
    per-record slices. Tests check that :func:`open_field` opens the result.

    :meth:`keys` and :meth:`seal` are separate steps so that the importer can make a
    batch's keys (random bytes, key wrap, cipher set-up: nothing depends on the
    database) before its write transaction, where only the encryption, which binds
    the record id, remains.
    """

    __slots__ = ("_prefix", "_wrap")

    def __init__(self, keystore: KeyStore, kek_version: int) -> None:
        self._wrap = partial(keystore.wrap_with, kek_version)
        # envelope.aad(table, binding, field) == prefix + binding + "/" + field
        self._prefix = envelope.aad(ADDRESS_TABLE, "", "").decode()[:-1]

    def keys(self, count: int) -> list[RecordKey]:
        """Fresh key material for ``count`` records, each its own."""
        material = os.urandom(count * _MATERIAL_BYTES)
        wrap, aesgcm = self._wrap, AESGCM
        out: list[RecordKey] = []
        append = out.append
        for at in range(0, count * _MATERIAL_BYTES, _MATERIAL_BYTES):
            data_key = material[at : at + _NONCE_NAME]
            append(
                (
                    wrap(data_key),
                    aesgcm(data_key),
                    material[at + _NONCE_NAME : at + _NONCE_ADDRESS],
                    material[at + _NONCE_ADDRESS : at + _MATERIAL_BYTES],
                )
            )
        return out

    def seal(
        self, items: Sequence[SealInput], keys: Sequence[RecordKey] | None = None
    ) -> list[tuple[bytes, bytes, bytes]]:
        """(wrapped_key, name_ct, address_ct) for each item, in order, each under its own
        key of ``keys`` (made here when not given; a key is never used twice)."""
        if keys is None:
            keys = self.keys(len(items))
        prefix = self._prefix
        out: list[tuple[bytes, bytes, bytes]] = []
        append = out.append
        for (record_id, blind_index, tax_period, as_of, name, address), key in zip(
            items, keys, strict=True
        ):
            wrapped, cipher, nonce_name, nonce_address = key
            encrypt = cipher.encrypt
            binding = f"{prefix}{record_id}/{blind_index.hex()}/{tax_period}/{as_of}/"
            append(
                (
                    wrapped,
                    nonce_name + encrypt(nonce_name, name, (binding + NAME_FIELD).encode()),
                    nonce_address
                    + encrypt(nonce_address, address, (binding + ADDRESS_FIELD).encode()),
                )
            )
        return out


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
