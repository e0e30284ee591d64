"""Pkcs11KeyStore against a real SoftHSM2 token."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from taxaddr.config import Settings
from taxaddr.crypto import envelope
from taxaddr.crypto.keystore import FileKeyStore, KeyStore, open_keystore
from taxaddr.crypto.pkcs11_store import (
    Pkcs11KeyStore,
    init_token_kek,
    kek_label,
)
from taxaddr.errors import IntegrityError, KeyMaterialError

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # as in tests/crypto/conftest.py
USER_PIN = "1234"


def _raw_session(token_label: str) -> pkcs11.Session:
    """A plain session on the token, sharing the store's login (same process)."""
    token = pkcs11.lib(SOFTHSM_MODULE).get_token(token_label=token_label)
    return token.open(rw=True)


def test_satisfies_keystore_protocol(hsm_store: Pkcs11KeyStore) -> None:
    assert isinstance(hsm_store, KeyStore)
    # composition, not inheritance: the file store's KEK code is not part of this store
    assert not isinstance(hsm_store, FileKeyStore)
    assert hsm_store.files.root == hsm_store.root


def test_wrap_unwrap_round_trip(hsm_store: Pkcs11KeyStore) -> None:
    data_key = envelope.new_data_key()
    version, wrapped = hsm_store.wrap(data_key)
    assert version == 1
    assert len(wrapped) == 40
    assert wrapped != data_key
    assert hsm_store.unwrap(version, wrapped) == data_key


def test_two_wraps_of_distinct_keys_differ(hsm_store: Pkcs11KeyStore) -> None:
    a, b = os.urandom(32), os.urandom(32)
    assert hsm_store.wrap_with(1, a) != hsm_store.wrap_with(1, b)


def test_hsm_wrap_is_rfc3394_same_format_as_file_store(keys_dir: Path, token_label: str) -> None:
    kek = os.urandom(32)
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    try:
        store.import_kek(1, kek)
        data_key = os.urandom(32)
        wrapped = store.wrap_with(1, data_key)
        assert aes_key_unwrap(kek, wrapped) == data_key
        assert store.unwrap(1, aes_key_wrap(kek, data_key)) == data_key
    finally:
        store.close()


def test_import_file_keks_keeps_existing_wrapped_keys_readable(
    keys_dir: Path, token_label: str
) -> None:
    files = FileKeyStore(keys_dir)
    data_key = os.urandom(32)
    version, wrapped = files.wrap(data_key)
    assert init_token_kek(SOFTHSM_MODULE, token_label, USER_PIN, import_from=keys_dir) == [1]
    # a second run never overwrites
    assert init_token_kek(SOFTHSM_MODULE, token_label, USER_PIN, import_from=keys_dir) == []
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    try:
        assert store.unwrap(version, wrapped) == data_key
    finally:
        store.close()


def test_init_token_kek_generates_v1(keys_dir: Path, token_label: str) -> None:
    assert init_token_kek(SOFTHSM_MODULE, token_label, USER_PIN) == [1]
    assert init_token_kek(SOFTHSM_MODULE, token_label, USER_PIN) == []
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    try:
        assert store.kek_versions() == [1]
        store.check()
    finally:
        store.close()


def test_import_from_empty_dir_refused(tmp_path: Path, token_label: str) -> None:
    with pytest.raises(KeyMaterialError, match="no KEK to import"):
        init_token_kek(SOFTHSM_MODULE, token_label, USER_PIN, import_from=tmp_path)


def test_import_existing_version_refused(hsm_store: Pkcs11KeyStore) -> None:
    with pytest.raises(KeyMaterialError, match="already exists"):
        hsm_store.import_kek(1, os.urandom(32))
    with pytest.raises(KeyMaterialError, match="wrong length"):
        hsm_store.import_kek(5, os.urandom(16))


def test_tampered_wrapped_key_is_integrity_error(hsm_store: Pkcs11KeyStore) -> None:
    version, wrapped = hsm_store.wrap(os.urandom(32))
    tampered = bytearray(wrapped)
    tampered[5] ^= 0x01
    with pytest.raises(IntegrityError):
        hsm_store.unwrap(version, bytes(tampered))
    with pytest.raises(IntegrityError):
        hsm_store.unwrap(version, wrapped[:-8])
    with pytest.raises(IntegrityError):
        hsm_store.unwrap(version, wrapped[:-3])
    # the store keeps working after a refusal
    assert len(hsm_store.unwrap(version, wrapped)) == 32


def test_wrapped_key_under_another_kek_fails(hsm_store: Pkcs11KeyStore) -> None:
    _, wrapped = hsm_store.wrap(os.urandom(32))
    hsm_store.new_kek_version()
    with pytest.raises(IntegrityError):
        hsm_store.unwrap(2, wrapped)


def test_unknown_kek_version_is_key_material_error(hsm_store: Pkcs11KeyStore) -> None:
    _, wrapped = hsm_store.wrap(os.urandom(32))
    with pytest.raises(KeyMaterialError, match="KEK version 9 not in the PKCS#11 token"):
        hsm_store.unwrap(9, wrapped)


def test_bad_data_key_length_refused(hsm_store: Pkcs11KeyStore) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        hsm_store.wrap(b"x" * 20)


def test_wrong_pin_fails_closed(keys_dir: Path, token_label: str) -> None:
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, "0000")
    with pytest.raises(KeyMaterialError, match="wrong PIN"):
        store.wrap(os.urandom(32))
    with pytest.raises(KeyMaterialError, match="wrong PIN"):
        store.check()


def test_missing_token_fails_closed(keys_dir: Path, softhsm_conf: Path) -> None:
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, "no-such-token", USER_PIN)
    with pytest.raises(KeyMaterialError, match="token 'no-such-token' not found"):
        store.check()


def test_missing_module_fails_closed(keys_dir: Path, tmp_path: Path) -> None:
    store = Pkcs11KeyStore(keys_dir, str(tmp_path / "nope.so"), "t", USER_PIN)
    with pytest.raises(KeyMaterialError, match="PKCS#11 module not found"):
        store.wrap(os.urandom(32))


def test_unloadable_module_fails_closed(keys_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"not a shared object")
    store = Pkcs11KeyStore(keys_dir, str(fake), "t", USER_PIN)
    with pytest.raises(KeyMaterialError, match="could not be loaded"):
        store.check()


def test_missing_settings_refused(keys_dir: Path) -> None:
    with pytest.raises(KeyMaterialError, match="TAXADDR_PKCS11_MODULE"):
        Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, "t", "")


def test_empty_token_has_no_current_kek(keys_dir: Path, token_label: str) -> None:
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    try:
        with pytest.raises(KeyMaterialError, match="no KEK in PKCS#11 token"):
            store.check()
    finally:
        store.close()


def test_kek_is_not_extractable(hsm_store: Pkcs11KeyStore, token_label: str) -> None:
    hsm_store.check()
    with _raw_session(token_label) as session:
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=kek_label(1))
        attrs = kek.get_attributes(
            [
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.ENCRYPT,
                Attribute.DECRYPT,
            ]
        )
        assert attrs[Attribute.SENSITIVE] is True
        assert attrs[Attribute.EXTRACTABLE] is False
        assert attrs[Attribute.NEVER_EXTRACTABLE] is True
        assert attrs[Attribute.ENCRYPT] is False
        assert attrs[Attribute.DECRYPT] is False
        with pytest.raises(p11e.AttributeSensitive):
            _ = kek[Attribute.VALUE]
        other = session.generate_key(pkcs11.KeyType.AES, 256, store=False)
        with pytest.raises(p11e.KeyUnextractable):
            other.wrap_key(kek, mechanism=Mechanism.AES_KEY_WRAP)


def test_store_never_reads_a_kek_file(hsm_store: Pkcs11KeyStore) -> None:
    # keys_dir has kek/v1.key from init_dev_keys; the HSM store must not use it
    # no KEK file reader at all: the store has neither the file store's KEKs nor a reader
    assert not hasattr(hsm_store, "keks")
    assert not hasattr(hsm_store, "_kek")
    files = FileKeyStore(hsm_store.root)
    _, wrapped = files.wrap(os.urandom(32))
    with pytest.raises(IntegrityError):
        hsm_store.unwrap(1, wrapped)


def test_rotation_new_version_old_keys_still_unwrap_then_retire(
    hsm_store: Pkcs11KeyStore, token_label: str
) -> None:
    old_key = os.urandom(32)
    v1, old_wrapped = hsm_store.wrap(old_key)
    assert hsm_store.new_kek_version() == 2
    v2, _ = hsm_store.wrap(os.urandom(32))
    assert (v1, v2) == (1, 2)
    assert hsm_store.current_kek_version() == 2
    assert hsm_store.unwrap(1, old_wrapped) == old_key
    # re-wrap like `taxaddr keys rotate-kek`, then retire v1
    rewrapped = hsm_store.wrap_with(2, hsm_store.unwrap(1, old_wrapped))
    hsm_store.retire_kek(1)
    assert hsm_store.kek_versions() == [2]
    with pytest.raises(KeyMaterialError):
        hsm_store.unwrap(1, old_wrapped)
    assert hsm_store.unwrap(2, rewrapped) == old_key
    # numbers are never reused, even though v1 is retired
    assert hsm_store.new_kek_version() == 3
    with _raw_session(token_label) as session:
        retired = session.get_key(label=kek_label(1, retired=True))
        assert retired[Attribute.UNWRAP] is False
        assert retired[Attribute.WRAP] is False
    hsm_store.retire_kek(1)  # idempotent


def test_retire_by_another_store_stops_cached_handles(
    hsm_store: Pkcs11KeyStore, keys_dir: Path, token_label: str
) -> None:
    _, wrapped = hsm_store.wrap(os.urandom(32))
    hsm_store.unwrap(1, wrapped)  # KEK handle now cached in a pooled session
    hsm_store.new_kek_version()
    other = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    try:
        other.retire_kek(1)
    finally:
        other.close()
    with pytest.raises(KeyMaterialError, match="refused to unwrap"):
        hsm_store.unwrap(1, wrapped)


def test_destroy_only_retired_keks(hsm_store: Pkcs11KeyStore, token_label: str) -> None:
    hsm_store.new_kek_version()
    with pytest.raises(KeyMaterialError, match="not a retired KEK"):
        hsm_store.destroy_retired_kek(1)
    hsm_store.retire_kek(1)
    hsm_store.destroy_retired_kek(1)
    with _raw_session(token_label) as session:
        objects = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        labels = {o[Attribute.LABEL] for o in objects}
    assert labels == {kek_label(2)}


def test_envelope_end_to_end_with_hsm(hsm_store: Pkcs11KeyStore) -> None:
    data_key = envelope.new_data_key()
    associated = envelope.aad("address_records", "rec-1", "street")
    sealed = envelope.seal(data_key, b"synthetic street 1", associated)
    version, wrapped = hsm_store.wrap(data_key)
    # later: only the wrapped key and the sealed value are stored
    recovered = hsm_store.unwrap(version, wrapped)
    assert envelope.open_sealed(recovered, sealed, associated) == b"synthetic street 1"
    with pytest.raises(IntegrityError):
        envelope.open_sealed(recovered, sealed, envelope.aad("address_records", "rec-2", "street"))


def test_concurrent_wraps_from_several_threads(hsm_store: Pkcs11KeyStore) -> None:
    failures: list[BaseException] = []
    mismatches: list[int] = []
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(150):
                key = os.urandom(32)
                version, wrapped = hsm_store.wrap(key)
                if hsm_store.unwrap(version, wrapped) != key:
                    mismatches.append(n * 1000 + i)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert mismatches == []


def test_lost_session_fails_closed_then_reconnects(hsm_store: Pkcs11KeyStore) -> None:
    _, wrapped = hsm_store.wrap(os.urandom(32))
    assert hsm_store._lease_ is not None
    hsm_store._lease_.session.close()  # e.g. the HSM dropped the connection
    with pytest.raises(KeyMaterialError, match="session lost"):
        hsm_store.unwrap(1, wrapped)
    assert len(hsm_store.unwrap(1, wrapped)) == 32


def test_check_verifies_file_keys_too(hsm_store: Pkcs11KeyStore) -> None:
    (hsm_store.root / "pseudonym.key").unlink()
    with pytest.raises(KeyMaterialError, match=r"pseudonym\.key missing"):
        hsm_store.check()


def test_other_keys_come_from_files(hsm_store: Pkcs11KeyStore, keys_dir: Path) -> None:
    files = FileKeyStore(keys_dir)
    assert hsm_store.blind_index_key() == files.blind_index_key()
    assert hsm_store.files.server_cert_path == keys_dir / "server.crt"


def test_open_keystore_chooses_pkcs11_from_settings(keys_dir: Path, token_label: str) -> None:
    settings = Settings(
        keys_dir=keys_dir,
        keystore="pkcs11",
        pkcs11_module=SOFTHSM_MODULE,
        pkcs11_token_label=token_label,
        pkcs11_pin=USER_PIN,
    )
    store = open_keystore(settings.keys_dir, settings.keystore, settings)
    try:
        assert isinstance(store, Pkcs11KeyStore)
        store.new_kek_version()
        store.check()
    finally:
        assert isinstance(store, Pkcs11KeyStore)
        store.close()


def test_open_keystore_reads_settings_from_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, token_label: str
) -> None:
    from taxaddr.config import get_settings

    monkeypatch.setenv("TAXADDR_KEYSTORE", "pkcs11")
    monkeypatch.setenv("TAXADDR_PKCS11_MODULE", SOFTHSM_MODULE)
    monkeypatch.setenv("TAXADDR_PKCS11_TOKEN_LABEL", token_label)
    monkeypatch.setenv("TAXADDR_PKCS11_PIN", "0000")
    get_settings.cache_clear()
    s = get_settings()
    store = open_keystore(s.keys_dir, s.keystore)
    assert isinstance(store, Pkcs11KeyStore)
    assert store.token_label == token_label
    with pytest.raises(KeyMaterialError, match="wrong PIN"):
        store.check()


def test_open_keystore_pkcs11_without_module_refused(keys_dir: Path) -> None:
    settings = Settings(keys_dir=keys_dir, keystore="pkcs11")
    with pytest.raises(KeyMaterialError, match="TAXADDR_PKCS11_MODULE"):
        open_keystore(keys_dir, "pkcs11", settings)
