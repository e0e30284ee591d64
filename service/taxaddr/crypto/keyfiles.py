"""What a key store keeps in files: the key directory's layout, and KEKs as files.

Layout of a key directory (directory 0700, every secret file 0600)::

    kek/v1.key ...            32-byte AES-256 KEKs; a retired one is renamed *.retired
                              (file key store only; a PKCS#11 store keeps KEKs in the HSM)
    blind-index.key           HMAC-SHA-256 key for the TIN blind index (store lookups)
    pseudonym.key             HMAC-SHA-256 key for subject_ref pseudonyms (policy, audit)
    audit-signing.key/.pub    Ed25519: checkpoints and disclosure receipts
    report-signing.key/.pub   Ed25519: compliance reports
    issuers/dev-court.key     Ed25519 private key of the dev case-reference issuer
    issuers/dev-court.jwk     its public JWK (RFC 7517) with kid
    server-ca.crt/.key        dev CA that signed server.crt
    server.crt/.key           the API's TLS certificate
    client-ca.crt/.key        dev CA for requester/oversight/monitor client certs

:class:`KeyFiles` reads everything but the KEKs (both key stores compose one);
:class:`FileKeks` keeps the KEKs of the file key store (and is what
``init_token_kek`` imports into an HSM). Neither knows which key store uses it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from taxaddr.crypto import pki
from taxaddr.errors import IntegrityError, KeyMaterialError

_KEK_RE = re.compile(r"^v(\d+)\.key$")


class KeyFiles:
    """The key directory: HMAC and signing keys, issuer keys and TLS material."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, object] = {}

    def blind_index_key(self) -> bytes:
        return self._secret("blind-index.key")

    def pseudonym_key(self) -> bytes:
        return self._secret("pseudonym.key")

    def _secret(self, name: str) -> bytes:
        cached = self._cache.get(name)
        if isinstance(cached, bytes):
            return cached
        key = read_secret(self.root / name, 32, name)
        self._cache[name] = key
        return key

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

    def client_ca(self) -> pki.CertKey:
        try:
            return pki.load_cert_key(
                (self.root / "client-ca.crt").read_bytes(),
                (self.root / "client-ca.key").read_bytes(),
            )
        except FileNotFoundError:
            raise KeyMaterialError("dev client CA missing (run: taxaddr keys init)") from None

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

    def exposed_files(self) -> list[str]:
        """Secret files (and key directories) that group or others may use; see
        :func:`exposed_key_files`."""
        return exposed_key_files(self.root)

    def check(self) -> None:
        """Every key the service reads from files is usable (KEKs are the store's)."""
        self.blind_index_key()
        self.pseudonym_key()
        self.audit_signing_key()
        self.report_signing_key()


class FileBackedKeys:
    """What both key stores serve from their :class:`KeyFiles` (composed, as ``files``):
    every key except the KEKs."""

    files: KeyFiles

    @property
    def root(self) -> Path:
        return self.files.root

    def blind_index_key(self) -> bytes:
        return self.files.blind_index_key()

    def pseudonym_key(self) -> bytes:
        return self.files.pseudonym_key()

    def audit_signing_key(self) -> Ed25519PrivateKey:
        return self.files.audit_signing_key()

    def report_signing_key(self) -> Ed25519PrivateKey:
        return self.files.report_signing_key()

    def issuer_signing_key(self, issuer_id: str) -> Ed25519PrivateKey:
        return self.files.issuer_signing_key(issuer_id)


class FileKeks:
    """Versioned KEKs as files under ``<root>/kek``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._keks: dict[int, bytes] = {}
        self._versions: tuple[int, list[int]] | None = None  # (directory mtime_ns, versions)

    def _kek_dir(self) -> Path:
        return self.root / "kek"

    def kek_versions(self) -> list[int]:
        """Active (not retired) KEK versions, ascending.

        Listed again whenever the directory changed (one ``stat`` per call instead of
        a listing per wrapped data key): a rotation or retirement by another process
        changes the directory's mtime and takes effect on the next call."""
        d = self._kek_dir()
        try:
            mtime = os.stat(d).st_mtime_ns
        except OSError:
            return []
        cached = self._versions
        if cached is not None and cached[0] == mtime:
            return list(cached[1])
        if not d.is_dir():
            return []
        matches = (_KEK_RE.match(p.name) for p in d.iterdir())
        versions = sorted(int(m.group(1)) for m in matches if m)
        # A change within the filesystem's timestamp granularity of this listing could
        # keep the same mtime: remember only listings of a directory quiet for 2 s.
        self._versions = (mtime, versions) if time.time_ns() - mtime > 2_000_000_000 else None
        return list(versions)

    def current_kek_version(self) -> int:
        versions = self.kek_versions()
        if not versions:
            raise KeyMaterialError(f"no KEK found in {self._kek_dir()} (run: taxaddr keys init)")
        return versions[-1]

    def kek(self, version: int) -> bytes:
        kek = self._keks.get(version)
        if kek is None:
            path = self._kek_dir() / f"v{version}.key"
            kek = read_secret(path, 32, f"KEK version {version}")
            self._keks[version] = kek
        return kek

    def wrap(self, data_key: bytes) -> tuple[int, bytes]:
        version = self.current_kek_version()
        return version, aes_key_wrap(self.kek(version), data_key)

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        return aes_key_wrap(self.kek(version), data_key)

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self.kek(kek_version), wrapped)
        except (InvalidUnwrap, InvalidKey, ValueError) as exc:
            raise IntegrityError("a wrapped data key failed to unwrap") from exc

    def new_kek_version(self) -> int:
        d = self._kek_dir()
        ensure_private_dir(d)
        existing = [int(m.group(1)) for p in d.iterdir() if (m := re.match(r"^v(\d+)", p.name))]
        version = max(existing, default=0) + 1
        write_private(d / f"v{version}.key", os.urandom(32))
        return version

    def retire_kek(self, version: int) -> None:
        path = self._kek_dir() / f"v{version}.key"
        if path.exists():
            path.rename(path.with_name(path.name + ".retired"))
        self._keks.pop(version, None)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
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
    directory has nothing exposed (the key store's ``check`` reports missing keys).
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


def read_secret(path: Path, length: int, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(f"{what} missing: {path}") from None
    except OSError as exc:
        raise KeyMaterialError(f"{what} unreadable: {path}") from exc
    if len(data) != length:
        raise KeyMaterialError(f"{what} has the wrong length: {path}")
    return data
