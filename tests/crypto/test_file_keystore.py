"""FileKeyStore edge cases: missing and malformed key material fails closed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from taxaddr.crypto.keystore import (
    FileKeyStore,
    KeyStore,
    ed25519_jwk,
    init_dev_keys,
    open_keystore,
)
from taxaddr.errors import IntegrityError, KeyMaterialError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_store_satisfies_protocol(keystore: FileKeyStore) -> None:
    assert isinstance(keystore, KeyStore)
    keystore.check()


def test_missing_kek_dir_fails_closed(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "empty")
    assert store.kek_versions() == []
    with pytest.raises(KeyMaterialError, match="no KEK found"):
        store.wrap(os.urandom(32))
    with pytest.raises(KeyMaterialError, match="no KEK found"):
        store.check()


def test_missing_kek_version_fails_closed(keystore: FileKeyStore) -> None:
    _, wrapped = keystore.wrap(os.urandom(32))
    with pytest.raises(KeyMaterialError, match="KEK version 7 missing"):
        keystore.unwrap(7, wrapped)


def test_wrong_length_kek_file(keys_dir: Path) -> None:
    (keys_dir / "kek" / "v1.key").chmod(0o600)
    (keys_dir / "kek" / "v1.key").write_bytes(b"short")
    with pytest.raises(KeyMaterialError, match="wrong length"):
        FileKeyStore(keys_dir).wrap(os.urandom(32))


def test_wrong_length_blind_index_key(keys_dir: Path) -> None:
    (keys_dir / "blind-index.key").write_bytes(os.urandom(33))
    with pytest.raises(KeyMaterialError, match="wrong length"):
        FileKeyStore(keys_dir).blind_index_key()


def test_unreadable_secret_is_key_material_error(keys_dir: Path) -> None:
    (keys_dir / "pseudonym.key").unlink()
    (keys_dir / "pseudonym.key").mkdir()  # reading a directory raises OSError
    with pytest.raises(KeyMaterialError, match="unreadable"):
        FileKeyStore(keys_dir).pseudonym_key()


def test_wrap_unwrap_round_trip_and_tamper(keystore: FileKeyStore) -> None:
    data_key = os.urandom(32)
    version, wrapped = keystore.wrap(data_key)
    assert keystore.unwrap(version, wrapped) == data_key
    tampered = bytearray(wrapped)
    tampered[0] ^= 0x80
    with pytest.raises(IntegrityError):
        keystore.unwrap(version, bytes(tampered))
    with pytest.raises(IntegrityError):
        keystore.unwrap(version, wrapped[:-1])


def test_rotation_and_retire(keystore: FileKeyStore) -> None:
    data_key = os.urandom(32)
    _, old = keystore.wrap(data_key)
    assert keystore.new_kek_version() == 2
    assert keystore.current_kek_version() == 2
    assert keystore.unwrap(1, old) == data_key
    rewrapped = keystore.wrap_with(2, keystore.unwrap(1, old))
    keystore.retire_kek(1)
    assert keystore.kek_versions() == [2]
    assert (keystore.root / "kek" / "v1.key.retired").exists()
    with pytest.raises(KeyMaterialError):
        keystore.unwrap(1, old)
    assert keystore.unwrap(2, rewrapped) == data_key
    # a retired number is never reused
    assert keystore.new_kek_version() == 3
    keystore.retire_kek(1)  # retiring twice is harmless


def test_issuer_id_with_path_characters_refused(keystore: FileKeyStore) -> None:
    for bad in ("../audit-signing", "a/b", "", "x" * 65, "dev court"):
        with pytest.raises(KeyMaterialError, match="not allowed"):
            keystore.issuer_signing_key(bad)
    assert keystore.issuer_signing_key("dev-court") is not None


def test_missing_and_malformed_signing_keys(keys_dir: Path) -> None:
    (keys_dir / "audit-signing.key").unlink()
    with pytest.raises(KeyMaterialError, match="key file missing"):
        FileKeyStore(keys_dir).audit_signing_key()
    (keys_dir / "report-signing.key").write_bytes(b"not pem")
    with pytest.raises(KeyMaterialError, match="unreadable"):
        FileKeyStore(keys_dir).report_signing_key()


def test_non_ed25519_signing_key_refused(keys_dir: Path) -> None:
    # the dev CA key is a valid PEM private key, but not Ed25519
    (keys_dir / "audit-signing.key").write_bytes((keys_dir / "client-ca.key").read_bytes())
    with pytest.raises(KeyMaterialError, match="not an Ed25519 key"):
        FileKeyStore(keys_dir).audit_signing_key()


def test_keys_are_cached(keystore: FileKeyStore) -> None:
    assert keystore.audit_signing_key() is keystore.audit_signing_key()
    assert keystore.pseudonym_key() is keystore.pseudonym_key()


def test_client_ca_missing(keys_dir: Path) -> None:
    store = FileKeyStore(keys_dir)
    assert store.files.client_ca() is not None
    (keys_dir / "client-ca.key").unlink()
    with pytest.raises(KeyMaterialError, match="client CA missing"):
        store.files.client_ca()


def test_tls_paths(keystore: FileKeyStore) -> None:
    for path in (
        keystore.files.server_cert_path,
        keystore.files.server_key_path,
        keystore.files.server_ca_path,
        keystore.files.client_ca_path,
    ):
        assert path.is_file()


def test_init_dev_keys_idempotent_and_private(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    created = init_dev_keys(root)
    assert "kek/v1.key" in created
    assert "server.crt" in created
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert init_dev_keys(root) == []
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot
    assert _mode(root) == 0o700
    assert _mode(root / "kek") == 0o700
    for name in (
        "kek/v1.key",
        "blind-index.key",
        "pseudonym.key",
        "audit-signing.key",
        "issuers/dev-court.key",
        "server.key",
        "client-ca.key",
    ):
        assert _mode(root / name) == 0o600, name
    assert _mode(root / "server.crt") == 0o644


def test_init_dev_keys_does_not_recreate_a_retired_only_kek(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    init_dev_keys(root)
    FileKeyStore(root).retire_kek(1)
    assert "kek/v1.key" not in init_dev_keys(root)
    assert FileKeyStore(root).kek_versions() == []


def test_init_dev_keys_fills_in_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    init_dev_keys(root)
    (root / "pseudonym.key").unlink()
    assert init_dev_keys(root) == ["pseudonym.key"]


def test_ed25519_jwk_rejects_other_keys() -> None:
    with pytest.raises(TypeError):
        ed25519_jwk(object(), "kid")


def test_open_keystore_file_and_unknown(keys_dir: Path) -> None:
    assert type(open_keystore(keys_dir)) is FileKeyStore
    with pytest.raises(KeyMaterialError, match="not available"):
        open_keystore(keys_dir, "vault")
