"""Key custody behind one Protocol.

The KEK never needs to leave the key store: callers ask it to wrap and unwrap
data keys. The file implementation keeps versioned KEKs under ``KEYS_DIR/kek``;
a PKCS#11 implementation keeps them in an HSM. Both compose a
:class:`~taxaddr.crypto.keyfiles.KeyFiles` (``files``) for everything that stays
in files — HMAC and signing keys, issuer keys, the TLS material and the
directory's layout — instead of one extending the other. The rest of the code
only sees :class:`KeyStore`; :func:`open_keystore` picks the implementation from
settings.

The key directory's layout: :mod:`taxaddr.crypto.keyfiles`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from taxaddr.config import Settings, get_settings
from taxaddr.crypto import pki
from taxaddr.crypto.keyfiles import (
    FileBackedKeys,
    FileKeks,
    KeyFiles,
    ensure_private_dir,
    exposed_key_files,
    write_private,
)
from taxaddr.errors import KeyMaterialError

DEV_ISSUER_ID = "dev-court"
DEV_ISSUER_KID = "dev-court-2026"
__all__ = [
    "DEV_ISSUER_ID",
    "DEV_ISSUER_KID",
    "FileKeyStore",
    "KeyFiles",
    "KeyStore",
    "ed25519_jwk",
    "exposed_key_files",
    "init_dev_keys",
    "open_keystore",
]


@runtime_checkable
class KeyStore(Protocol):
    """What the service needs from key custody."""

    def current_kek_version(self) -> int: ...

    def wrap(self, data_key: bytes) -> tuple[int, bytes]:
        """Wrap ``data_key`` under the current KEK; returns (kek_version, wrapped)."""
        ...

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        """Wrap under a given KEK version (batch writers fetch the version once)."""
        ...

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        """Unwrap; raises :class:`IntegrityError` if tampered, KeyMaterialError if absent."""
        ...

    def kek_versions(self) -> list[int]:
        """Active (not retired) KEK versions, ascending."""
        ...

    def blind_index_key(self) -> bytes: ...

    def pseudonym_key(self) -> bytes: ...

    def audit_signing_key(self) -> Ed25519PrivateKey: ...

    def report_signing_key(self) -> Ed25519PrivateKey: ...

    def new_kek_version(self) -> int:
        """Create a new KEK version and make it current; returns its number."""
        ...

    def retire_kek(self, version: int) -> None:
        """Take an old KEK out of service (after every data key was re-wrapped)."""
        ...

    def check(self) -> None:
        """Raise KeyMaterialError unless every key the service needs is usable."""
        ...

    @property
    def files(self) -> KeyFiles:
        """What stays in files: HMAC and signing keys, issuer keys, TLS material, layout."""
        ...

    @property
    def root(self) -> Path:
        """The key directory (``files.root``)."""
        ...

    def issuer_signing_key(self, issuer_id: str) -> Ed25519PrivateKey:
        """A locally held case-reference issuer key (dev/testing stand-in for a court)."""
        ...


class FileKeyStore(FileBackedKeys):
    """Keys as files in one directory (dev default, or files mounted by a deployment)."""

    def __init__(self, root: Path) -> None:
        self.files = KeyFiles(root)
        self.keks = FileKeks(root)

    def kek_versions(self) -> list[int]:
        return self.keks.kek_versions()

    def current_kek_version(self) -> int:
        return self.keks.current_kek_version()

    def wrap(self, data_key: bytes) -> tuple[int, bytes]:
        return self.keks.wrap(data_key)

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        return self.keks.wrap_with(version, data_key)

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        return self.keks.unwrap(kek_version, wrapped)

    def new_kek_version(self) -> int:
        return self.keks.new_kek_version()

    def retire_kek(self, version: int) -> None:
        self.keks.retire_kek(version)

    def check(self) -> None:
        self.keks.kek(self.keks.current_kek_version())
        self.files.check()


def open_keystore(keys_dir: Path, kind: str = "file", settings: Settings | None = None) -> KeyStore:
    """The one place the key store implementation is chosen.

    ``pkcs11`` returns a :class:`~taxaddr.crypto.pkcs11_store.Pkcs11KeyStore` (KEKs in
    an HSM, the other keys from the directory's files; module, token label and PIN come
    from ``settings``, default :func:`taxaddr.config.get_settings`). See docs/pkcs11.md.
    """
    if kind == "file":
        return FileKeyStore(keys_dir)
    if kind == "pkcs11":
        # lazy: file-only installs never load the PKCS#11 library
        from taxaddr.crypto.pkcs11_store import Pkcs11KeyStore  # noqa: PLC0415

        return Pkcs11KeyStore.from_settings(settings or get_settings(), keys_dir)
    raise KeyMaterialError(f"key store {kind!r} is not available in this build")


# -- creation ---------------------------------------------------------------------------


def init_dev_keys(root: Path) -> list[str]:
    """Create every missing dev key; never overwrite. Returns the names created."""
    root = Path(root)
    ensure_private_dir(root)
    created: list[str] = []
    store = FileKeyStore(root)
    if not store.kek_versions() and not any((root / "kek").glob("v*.key*")):
        store.new_kek_version()
        created.append("kek/v1.key")
    for name in ("blind-index.key", "pseudonym.key"):
        if _create_if_absent(root / name, lambda: os.urandom(32)):
            created.append(name)
    for name in ("audit-signing", "report-signing", f"issuers/{DEV_ISSUER_ID}"):
        if _create_ed25519(root, name):
            created.append(f"{name}.key")
    jwk_path = root / "issuers" / f"{DEV_ISSUER_ID}.jwk"
    if not jwk_path.exists():
        pub = store.issuer_signing_key(DEV_ISSUER_ID).public_key()
        write_private(jwk_path, json.dumps(ed25519_jwk(pub, DEV_ISSUER_KID), indent=2).encode())
        created.append(f"issuers/{DEV_ISSUER_ID}.jwk")
    for prefix, cn in (
        ("server-ca", "taxaddr dev server CA"),
        ("client-ca", "taxaddr dev client CA"),
    ):
        if not (root / f"{prefix}.crt").exists():
            ca = pki.make_ca(cn)
            write_private(root / f"{prefix}.key", ca.key_pem())
            write_private(root / f"{prefix}.crt", ca.cert_pem(), mode=0o644)
            created.append(f"{prefix}.crt")
    if not (root / "server.crt").exists():
        server_ca = pki.load_cert_key(
            (root / "server-ca.crt").read_bytes(), (root / "server-ca.key").read_bytes()
        )
        leaf = pki.issue_cert(server_ca, "localhost", server=True)
        write_private(root / "server.key", leaf.key_pem())
        write_private(root / "server.crt", leaf.cert_pem() + server_ca.cert_pem(), mode=0o644)
        created.append("server.crt")
    return created


def ed25519_jwk(public_key: object, kid: str) -> dict[str, str]:
    if not isinstance(public_key, Ed25519PublicKey):
        raise TypeError("expected an Ed25519 public key")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def _create_ed25519(root: Path, name: str) -> bool:
    key_path = root / f"{name}.key"
    if key_path.exists():
        return False
    key = Ed25519PrivateKey.generate()
    ensure_private_dir(key_path.parent)
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_private(root / f"{name}.pub", pub, mode=0o644)
    return True


def _create_if_absent(path: Path, make: Callable[[], bytes]) -> bool:
    if path.exists():
        return False
    write_private(path, make())
    return True
