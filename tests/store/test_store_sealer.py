"""The importer's batch sealer and direct address encoding agree with the reference forms."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from taxaddr.crypto import envelope
from taxaddr.crypto.keystore import FileKeyStore
from taxaddr.db.schema import address_records as t
from taxaddr.errors import IntegrityError
from taxaddr.store.importer import import_file
from taxaddr.store.records import (
    ADDRESS_FIELD,
    NAME_FIELD,
    AddressFields,
    BatchSealer,
    address_bytes,
    open_field,
    record_aad,
)
from tests.store.store_helpers import SEED_ROWS, write_csv

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# Mostly ASCII (the direct path), with the characters JSON must escape, plus any text.
_PART = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
    st.text(alphabet='ab "\\\t\x7f/', max_size=6),
    st.text(max_size=8),
)


@given(_PART, _PART, _PART, _PART)
def test_address_bytes_equal_the_json_encoding(street: str, city: str, state: str, z: str) -> None:
    assert address_bytes(street, city, state, z) == _ENCODE([street, city, state, z]).encode()


@pytest.mark.parametrize("street", ['1 "Quoted" St', "1 Back\\slash St", "1 Tab\tSt", "Ünïcode 5"])
def test_address_bytes_escape_what_json_escapes(street: str) -> None:
    raw = address_bytes(street, "City", "IL", "62701")
    assert json.loads(raw) == [street, "City", "IL", "62701"]
    assert AddressFields.from_bytes(raw) == AddressFields(street, "City", "IL", "62701")


def _items(n: int) -> list[tuple[int, bytes, str, str, bytes, bytes]]:
    return [
        (
            i + 1,
            bytes([i]) * 32,
            "2024",
            "2025-01-0" + str(1 + i % 9),
            f"NAME {i}".encode(),
            address_bytes(f"{i} Main St", "Town", "IL", "62701"),
        )
        for i in range(n)
    ]


def test_batch_sealer_output_opens_with_each_records_own_key(keys_dir: Path) -> None:
    keystore = FileKeyStore(keys_dir)
    version = keystore.current_kek_version()
    items = _items(5)
    sealed = BatchSealer(keystore, version).seal(items)
    keys = set()
    nonces = set()
    for (rid, bi, period, iso, name, address), (wrapped, name_ct, address_ct) in zip(
        items, sealed, strict=True
    ):
        data_key = keystore.unwrap(version, wrapped)
        keys.add(data_key)
        nonces.update({name_ct[: envelope.NONCE_BYTES], address_ct[: envelope.NONCE_BYTES]})
        cipher = AESGCM(data_key)
        as_of = date.fromisoformat(iso)
        assert open_field(cipher, name_ct, record_aad(rid, bi, period, as_of, NAME_FIELD)) == name
        got = open_field(cipher, address_ct, record_aad(rid, bi, period, as_of, ADDRESS_FIELD))
        assert got == address
        # The associated data binds the record: another record's binding fails.
        with pytest.raises(IntegrityError):
            open_field(cipher, name_ct, record_aad(rid + 1, bi, period, as_of, NAME_FIELD))
        with pytest.raises(IntegrityError):
            open_field(cipher, address_ct, record_aad(rid, bi, period, as_of, NAME_FIELD))
    assert len(keys) == len(items)  # a fresh data key per record
    assert len(nonces) == 2 * len(items)


def test_batch_sealer_slices_one_csprng_call_into_disjoint_keys(keys_dir: Path) -> None:
    keystore = FileKeyStore(keys_dir)
    version = keystore.current_kek_version()
    material = bytes(range(256)) * 2  # a known stream, so the slicing is visible
    with mock.patch("taxaddr.store.records.os.urandom", return_value=material[:168]) as rnd:
        sealed = BatchSealer(keystore, version).seal(_items(3))
    rnd.assert_called_once_with(3 * (envelope.DATA_KEY_BYTES + 2 * envelope.NONCE_BYTES))
    for i, (wrapped, name_ct, address_ct) in enumerate(sealed):
        at = i * 56
        assert keystore.unwrap(version, wrapped) == material[at : at + 32]
        assert name_ct[:12] == material[at + 32 : at + 44]
        assert address_ct[:12] == material[at + 44 : at + 56]


def test_imported_times_are_stored_as_sqlalchemy_writes_them(
    engine: Engine, keystore: FileKeyStore, tmp_path: Path
) -> None:
    report = import_file(engine, keystore, write_csv(tmp_path / "in.csv", SEED_ROWS[:1]))
    assert report.inserted == 1
    with engine.connect() as conn:
        row = conn.execute(t.select()).one()
        raw = conn.exec_driver_sql(f"SELECT created_at, as_of FROM {t.name}").one()  # noqa: S608
    assert row.as_of == date(2024, 3, 1)
    assert row.created_at is not None
    assert row.updated_at == row.created_at
    if engine.dialect.name == "sqlite":
        # No driver-default adapter: the dialect's own rendering, as for every other write.
        assert raw[0] == t.c.created_at.type.dialect_impl(engine.dialect).bind_processor(
            engine.dialect
        )(row.created_at)
        assert raw[1] == "2024-03-01"
