"""Key custody behind one Protocol.

The KEK never needs to leave the key store: callers ask it to wrap and unwrap
data keys. The file implementation keeps versioned KEKs under ``KEYS_DIR/kek``;
a PKCS#11 implementation keeps them in an HSM. The rest of the code only sees
:class:`KeyStore`; :func:`open_keystore` picks the implementation from settings.

Layout of a file key store (directory 0700, every file 0600)::

    kek/v1.key ...            32-byte AES-256 KEKs; a retired one is renamed *.retired
    blind-index.key           HMAC-SHA-256 key for the TIN blind index (store lookups)
    pseudonym.key             HMAC-SHA-256 key for subject_ref pseudonyms (policy, audit)
    audit-signing.key/.pub    Ed25519: checkpoints and disclosure receipts
    report-signing.key/.pub   Ed25519: compliance reports
    issuers/dev-court.key     Ed25519 private key of the dev case-reference issuer
    issuers/dev-court.jwk     its public JWK (RFC 7517) with kid
    server-ca.crt/.key        dev CA that signed server.crt
    server.crt/.key           the API's TLS certificate
    client-ca.crt/.key        dev CA for requester/oversight/monitor client certs
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from taxaddr.config import Settings, get_settings
from taxaddr.crypto import pki
from taxaddr.errors import IntegrityError, KeyMaterialError

DEV_ISSUER_ID = "dev-court"
DEV_ISSUER_KID = "dev-court-2026"
_KEK_RE = re.compile(r"^v(\d+)\.key$")


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


class FileKeyStore:
    """Keys as files in one directory (dev default, or files mounted by a deployment)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._keks: dict[int, bytes] = {}
        self._cache: dict[str, object] = {}

    # -- KEKs -----------------------------------------------------------------------
    def _kek_dir(self) -> Path:
        return self.root / "kek"

    def kek_versions(self) -> list[int]:
        """Active (not retired) KEK versions, ascending."""
        d = self._kek_dir()
        if not d.is_dir():
            return []
        matches = (_KEK_RE.match(p.name) for p in d.iterdir())
        return sorted(int(m.group(1)) for m in matches if m)

    def current_kek_version(self) -> int:
        versions = self.kek_versions()
        if not versions:
            raise KeyMaterialError(f"no KEK found in {self._kek_dir()} (run: taxaddr keys init)")
        return versions[-1]

    def _kek(self, version: int) -> bytes:
        kek = self._keks.get(version)
        if kek is None:
            path = self._kek_dir() / f"v{version}.key"
            kek = _read_secret(path, 32, f"KEK version {version}")
            self._keks[version] = kek
        return kek

    def wrap(self, data_key: bytes) -> tuple[int, bytes]:
        version = self.current_kek_version()
        return version, aes_key_wrap(self._kek(version), data_key)

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        return aes_key_wrap(self._kek(version), data_key)

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._kek(kek_version), wrapped)
        except (InvalidUnwrap, InvalidKey, ValueError) as exc:
            raise IntegrityError("a wrapped data key failed to unwrap") from exc

    def new_kek_version(self) -> int:
        d = self._kek_dir()
        _ensure_private_dir(d)
        existing = [int(m.group(1)) for p in d.iterdir() if (m := re.match(r"^v(\d+)", p.name))]
        version = max(existing, default=0) + 1
        _write_private(d / f"v{version}.key", os.urandom(32))
        return version

    def retire_kek(self, version: int) -> None:
        path = self._kek_dir() / f"v{version}.key"
        if path.exists():
            path.rename(path.with_name(path.name + ".retired"))
        self._keks.pop(version, None)

    # -- symmetric keys -------------------------------------------------------------
    def blind_index_key(self) -> bytes:
        return self._secret("blind-index.key")

    def pseudonym_key(self) -> bytes:
        return self._secret("pseudonym.key")

    def _secret(self, name: str) -> bytes:
        cached = self._cache.get(name)
        if isinstance(cached, bytes):
            return cached
        key = _read_secret(self.root / name, 32, name)
        self._cache[name] = key
        return key

    # -- signing keys ---------------------------------------------------------------
    def audit_signing_key(self) -> Ed25519PrivateKey:
        return self._ed25519("audit-signing.key")

    def report_signing_key(self) -> Ed25519PrivateKey:
        return self._ed25519("report-signing.key")

    def issuer_signing_key(self, issuer_id: str) -> Ed25519PrivateKey:
        """A locally held case-reference issuer key (dev/testing stand-in for a court)."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", issuer_id):
            raise KeyMaterialError("issuer id has characters not allowed in a key file name")
        return self._ed25519(f"issuers/{issuer_id}.key")

    def _ed25519(self, name: str) -> Ed25519PrivateKey:
        cached = self._cache.get(name)
        if isinstance(cached, Ed25519PrivateKey):
            return cached
        path = self.root / name
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyMaterialError(f"key file missing: {path}") from None
        except (ValueError, TypeError) as exc:
            raise KeyMaterialError(f"key file unreadable: {path}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyMaterialError(f"key file is not an Ed25519 key: {path}")
        self._cache[name] = key
        return key

    # -- TLS material ---------------------------------------------------------------
    @property
    def server_cert_path(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.root / "server.key"

    @property
    def server_ca_path(self) -> Path:
        return self.root / "server-ca.crt"

    @property
    def client_ca_path(self) -> Path:
        return self.root / "client-ca.crt"

    def client_ca(self) -> pki.CertKey:
        try:
            return pki.load_cert_key(
                (self.root / "client-ca.crt").read_bytes(),
                (self.root / "client-ca.key").read_bytes(),
            )
        except FileNotFoundError:
            raise KeyMaterialError("dev client CA missing (run: taxaddr keys init)") from None

    def exposed_files(self) -> list[str]:
        """Secret files (and key directories) that group or others may use; see
        :func:`exposed_key_files`."""
        return exposed_key_files(self.root)

    def check(self) -> None:
        self._kek(self.current_kek_version())
        self.blind_index_key()
        self.pseudonym_key()
        self.audit_signing_key()
        self.report_signing_key()


def open_keystore(
    keys_dir: Path, kind: str = "file", settings: Settings | None = None
) -> FileKeyStore:
    """The one place the key store implementation is chosen.

    ``pkcs11`` returns a :class:`~taxaddr.crypto.pkcs11_store.Pkcs11KeyStore` (a
    FileKeyStore whose KEKs live in an HSM; module, token label and PIN come from
    ``settings``, default :func:`taxaddr.config.get_settings`). See docs/pkcs11.md.
    """
    if kind == "file":
        return FileKeyStore(keys_dir)
    if kind == "pkcs11":
        # lazy: pkcs11_store imports this module, and file-only installs never load pkcs11
        from taxaddr.crypto.pkcs11_store import Pkcs11KeyStore  # noqa: PLC0415

        return Pkcs11KeyStore.from_settings(settings or get_settings(), keys_dir)
    raise KeyMaterialError(f"key store {kind!r} is not available in this build")


# -- creation ---------------------------------------------------------------------------


def init_dev_keys(root: Path) -> list[str]:
    """Create every missing dev key; never overwrite. Returns the names created."""
    root = Path(root)
    _ensure_private_dir(root)
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
        _write_private(jwk_path, json.dumps(ed25519_jwk(pub, DEV_ISSUER_KID), indent=2).encode())
        created.append(f"issuers/{DEV_ISSUER_ID}.jwk")
    for prefix, cn in (
        ("server-ca", "taxaddr dev server CA"),
        ("client-ca", "taxaddr dev client CA"),
    ):
        if not (root / f"{prefix}.crt").exists():
            ca = pki.make_ca(cn)
            _write_private(root / f"{prefix}.key", ca.key_pem())
            _write_private(root / f"{prefix}.crt", ca.cert_pem(), mode=0o644)
            created.append(f"{prefix}.crt")
    if not (root / "server.crt").exists():
        server_ca = pki.load_cert_key(
            (root / "server-ca.crt").read_bytes(), (root / "server-ca.key").read_bytes()
        )
        leaf = pki.issue_cert(server_ca, "localhost", server=True)
        _write_private(root / "server.key", leaf.key_pem())
        _write_private(root / "server.crt", leaf.cert_pem() + server_ca.cert_pem(), mode=0o644)
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
    _ensure_private_dir(key_path.parent)
    _write_private(
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
    _write_private(root / f"{name}.pub", pub, mode=0o644)
    return True


def _create_if_absent(path: Path, make: Callable[[], bytes]) -> bool:
    if path.exists():
        return False
    _write_private(path, make())
    return True


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` exclusively (never overwrite) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


# Group and others may not touch a secret at all; a key directory they may write to lets
# them replace a key (its files' own modes do not matter then).
_SECRET_MODE_FORBIDDEN = 0o077
_DIRECTORY_MODE_FORBIDDEN = 0o022
_PUBLIC_SUFFIXES = (".crt", ".pub", ".jwk", ".vkey", ".md")


def exposed_key_files(root: Path) -> list[str]:
    """Names (relative to ``root``, sorted) of the secret key files that group or others
    may read or write, and of key directories they may write to.

    Secret: every file of ``kek/`` (current and retired KEKs) and every other file
    whose name does not end in a public suffix (certificates, public keys, JWKs,
    verifier keys, Markdown notes). Modes are those of the files symlinks point to. A missing
    directory has nothing exposed (:meth:`FileKeyStore.check` reports missing keys).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    exposed: list[str] = []
    for directory, _subdirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        if here.stat().st_mode & _DIRECTORY_MODE_FORBIDDEN:
            exposed.append(here.relative_to(root).as_posix() + "/")
        for name in files:
            path = here / name
            relative = path.relative_to(root).as_posix()
            public = name.endswith(_PUBLIC_SUFFIXES) and not relative.startswith("kek/")
            if public:
                continue
            try:
                mode = path.stat().st_mode
            except OSError:  # a dangling symlink: reading it fails where it matters
                continue
            if mode & _SECRET_MODE_FORBIDDEN:
                exposed.append(relative)
    return sorted(exposed)


def _read_secret(path: Path, length: int, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(f"{what} missing: {path}") from None
    except OSError as exc:
        raise KeyMaterialError(f"{what} unreadable: {path}") from exc
    if len(data) != length:
        raise KeyMaterialError(f"{what} has the wrong length: {path}")
    return data
