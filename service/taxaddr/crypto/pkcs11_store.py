"""KEK custody in an HSM over PKCS#11 (production), behind the :class:`KeyStore` Protocol.

What lives where:

* **KEKs** are AES-256 secret keys in the token, labelled ``taxaddr-kek-v1``,
  ``taxaddr-kek-v2`` ... They are generated inside the HSM (or imported once from a
  file store), marked ``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``, and can only
  wrap and unwrap. Wrapping a 32-byte data key happens inside the HSM with
  ``CKM_AES_KEY_WRAP`` (RFC 3394, default IV), so the wrapped bytes have exactly the
  format the file store produces: a database can move between the two stores once
  the file KEKs are imported into the token (:func:`init_token_kek` ``import_from``).
  SoftHSM2 2.6 offers ``CKM_AES_KEY_WRAP`` only through ``C_WrapKey``/``C_UnwrapKey``
  (not ``C_Encrypt``), so a data key travels as a short-lived *session* object: it is
  created, wrapped and destroyed (wrap), or unwrapped, read and destroyed (unwrap).
* **Everything else** (blind-index and pseudonym HMAC keys, audit/report signing
  keys, dev issuer keys, TLS material) comes from the files directory through the
  :class:`~taxaddr.crypto.keyfiles.KeyFiles` this store composes (``files``), as
  the file key store does. An HMAC per imported row and
  per lookup through the HSM would cost a round trip each (a few thousand per
  second on SoftHSM, far fewer on a network HSM) and the TLS stack needs key
  files anyway; the trade-off is that those keys are protected by the
  deployment's file permissions / secret mounts, not by the HSM.
  The KEK is the key whose theft would expose every address.

Retiring a KEK relabels it ``taxaddr-kek-vN-retired`` and clears its ``CKA_WRAP``
and ``CKA_UNWRAP`` flags: no process can use it any more, yet an operator who finds
a record that a rotation missed can still re-enable it. :func:`destroy_retired_kek`
removes it for good once that is settled.

Thread safety: python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module
that the application will not call it from several threads at once (SoftHSM2 then
runs without internal mutexes; concurrent calls corrupted wraps in our tests). So
every call into a module goes through one lock per module path, shared by every
store object in the process, over one logged-in session per store. Throughput
scales with processes/replicas, not threads (see bench/bench_pkcs11.py).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e

from taxaddr.crypto.keyfiles import FileBackedKeys, FileKeks, KeyFiles
from taxaddr.errors import IntegrityError, KeyMaterialError

if TYPE_CHECKING:
    from taxaddr.config import Settings

KEK_LABEL_PREFIX = "taxaddr-kek-v"
RETIRED_SUFFIX = "-retired"
_LABEL_RE = re.compile(r"^taxaddr-kek-v(\d+)(-retired)?$")
_WRAP_OVERHEAD = 8  # RFC 3394 adds one 64-bit block
# A data key passing through the token (to be wrapped, or just unwrapped): a session
# object, never stored, that the token hands back in the clear.
_TRANSIENT_DATA_KEY = {
    Attribute.TOKEN: False,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}

# The HSM says the wrapped bytes are wrong (SoftHSM2 answers a failed RFC 3394
# integrity check with CKR_GENERAL_ERROR, other tokens with CKR_WRAPPED_KEY_INVALID).
_TAMPER_ERRORS: tuple[type[Exception], ...] = (
    p11e.WrappedKeyInvalid,
    p11e.WrappedKeyLenRange,
    p11e.EncryptedDataInvalid,
    p11e.EncryptedDataLenRange,
    p11e.GeneralError,
)
# The session is gone; drop it from the pool so the next call reconnects.
_SESSION_ERRORS: tuple[type[Exception], ...] = (
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.UserNotLoggedIn,
)


def kek_label(version: int, *, retired: bool = False) -> str:
    return f"{KEK_LABEL_PREFIX}{version}{RETIRED_SUFFIX if retired else ''}"


_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def _module_lock(module: str) -> threading.RLock:
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(module, threading.RLock())


@dataclass
class _Lease:
    """The store's logged-in PKCS#11 session plus the KEK handles found in it."""

    session: Any
    keks: dict[int, Any] = field(default_factory=dict)


class Pkcs11KeyStore(FileBackedKeys):
    """A key store whose KEKs live in a PKCS#11 token (see module docstring).

    Every other key comes from the composed :class:`KeyFiles`; no KEK is ever read
    from disk (this class has no KEK file reader at all).
    """

    def __init__(
        self,
        keys_dir: Path,
        module: str,
        token_label: str,
        pin: str,
        *,
        refresh_seconds: float = 2.0,
    ) -> None:
        if not module or not token_label or not pin:
            raise KeyMaterialError(
                "PKCS#11 key store needs TAXADDR_PKCS11_MODULE, "
                "TAXADDR_PKCS11_TOKEN_LABEL and TAXADDR_PKCS11_PIN"
            )
        self.files = KeyFiles(keys_dir)
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self.refresh_seconds = refresh_seconds
        self._lock = _module_lock(module)  # every call into the module, see docstring
        self._lease_: _Lease | None = None
        self._current: tuple[float, int] | None = None  # (monotonic time read, version)

    @classmethod
    def from_settings(cls, settings: Settings, keys_dir: Path | None = None) -> Pkcs11KeyStore:
        return cls(
            keys_dir if keys_dir is not None else settings.keys_dir,
            settings.pkcs11_module or "",
            settings.pkcs11_token_label or "",
            settings.pkcs11_pin or "",
        )

    # -- connection -----------------------------------------------------------------
    def _connect(self) -> _Lease:
        """Load the module, find the token and log in (caller holds ``_lock``)."""
        if self._lease_ is not None:
            return self._lease_
        if not Path(self.module).is_file():
            raise KeyMaterialError(f"PKCS#11 module not found: {self.module}")
        try:
            lib = pkcs11.lib(self.module)
        except p11e.PKCS11Error as exc:
            raise KeyMaterialError(f"PKCS#11 module could not be loaded: {self.module}") from exc
        try:
            token = lib.get_token(token_label=self.token_label)
        except p11e.NoSuchToken:
            raise KeyMaterialError(
                f"PKCS#11 token {self.token_label!r} not found in {self.module}"
            ) from None
        except p11e.MultipleTokensReturned:
            raise KeyMaterialError(
                f"more than one PKCS#11 token is labelled {self.token_label!r}"
            ) from None
        except p11e.PKCS11Error as exc:
            raise KeyMaterialError("PKCS#11 token lookup failed") from exc
        try:
            session = token.open(rw=True, user_pin=self._pin)
        except p11e.UserAlreadyLoggedIn:
            # Another store object in this process is logged in to the same token;
            # PKCS#11 logins are per application, so a plain session shares it.
            session = token.open(rw=True)
        except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
            raise KeyMaterialError(
                f"PKCS#11 login to token {self.token_label!r} refused: wrong PIN"
            ) from None
        except (p11e.PinLocked, p11e.PinExpired):
            raise KeyMaterialError(
                f"PKCS#11 PIN of token {self.token_label!r} is locked or expired"
            ) from None
        except p11e.PKCS11Error as exc:
            raise KeyMaterialError(
                f"PKCS#11 session on token {self.token_label!r} could not be opened"
            ) from exc
        self._lease_ = _Lease(session)
        return self._lease_

    def close(self) -> None:
        """Close the session (the token logs out when the process's last one closes)."""
        with self._lock:
            lease, self._lease_ = self._lease_, None
            self._current = None
            if lease is not None:
                with contextlib.suppress(p11e.PKCS11Error):
                    lease.session.close()

    @contextlib.contextmanager
    def _lease(self) -> Iterator[_Lease]:
        """The session for one operation, under the module lock; a lost one is dropped."""
        with self._lock:
            lease = self._connect()
            try:
                yield lease
            except _SESSION_ERRORS as exc:
                self.close()
                raise KeyMaterialError("PKCS#11 session lost; will reconnect") from exc

    def _kek_in(self, lease: _Lease, version: int) -> Any:
        kek = lease.keks.get(version)
        if kek is None:
            kek = _find_kek(lease.session, version)
            lease.keks[version] = kek
        return kek

    # -- KEKs -----------------------------------------------------------------------
    def kek_versions(self) -> list[int]:
        """Active (not retired) KEK versions in the token, ascending."""
        with self._lease() as lease:
            return sorted(v for v, retired in _list_keks(lease.session) if not retired)

    def current_kek_version(self) -> int:
        """Newest active KEK version (re-read from the token every ``refresh_seconds``)."""
        now = time.monotonic()
        cached = self._current
        if cached is not None and now - cached[0] < self.refresh_seconds:
            return cached[1]
        versions = self.kek_versions()
        if not versions:
            raise KeyMaterialError(
                f"no KEK in PKCS#11 token {self.token_label!r} "
                "(run init_token_kek, see docs/pkcs11.md)"
            )
        self._current = (now, versions[-1])
        return versions[-1]

    def wrap(self, data_key: bytes) -> tuple[int, bytes]:
        version = self.current_kek_version()
        return version, self.wrap_with(version, data_key)

    def wrap_with(self, version: int, data_key: bytes) -> bytes:
        if len(data_key) < 16 or len(data_key) % 8:
            raise ValueError("data key length must be a multiple of 8 bytes, at least 16")
        with self._lease() as lease:
            kek = self._kek_in(lease, version)
            session = lease.session
            try:
                obj = session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                        Attribute.VALUE: data_key,
                        **_TRANSIENT_DATA_KEY,
                    }
                )
            except _SESSION_ERRORS:
                raise
            except p11e.PKCS11Error as exc:
                raise KeyMaterialError("HSM refused to take a data key for wrapping") from exc
            try:
                wrapped: bytes = kek.wrap_key(obj, mechanism=Mechanism.AES_KEY_WRAP)
            except _SESSION_ERRORS:
                raise
            except p11e.PKCS11Error as exc:
                raise KeyMaterialError(f"KEK version {version} refused to wrap") from exc
            finally:
                with contextlib.suppress(p11e.PKCS11Error):
                    obj.destroy()
            return wrapped

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        if len(wrapped) < 16 + _WRAP_OVERHEAD or len(wrapped) % 8:
            raise IntegrityError("a wrapped data key failed to unwrap")
        with self._lease() as lease:
            kek = self._kek_in(lease, kek_version)
            try:
                obj = kek.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    wrapped,
                    mechanism=Mechanism.AES_KEY_WRAP,
                    store=False,
                    capabilities=MechanismFlag(0),
                    template=dict(_TRANSIENT_DATA_KEY),
                )
            except _SESSION_ERRORS:
                raise
            except _TAMPER_ERRORS as exc:
                raise IntegrityError("a wrapped data key failed to unwrap") from exc
            except p11e.PKCS11Error as exc:
                # e.g. CKR_KEY_FUNCTION_NOT_PERMITTED: the KEK was retired meanwhile
                raise KeyMaterialError(
                    f"KEK version {kek_version} refused to unwrap (retired?)"
                ) from exc
            try:
                value: bytes = obj[Attribute.VALUE]
            finally:
                with contextlib.suppress(p11e.PKCS11Error):
                    obj.destroy()
            return bytes(value)

    def new_kek_version(self) -> int:
        """Generate the next KEK inside the token (never reusing a retired number)."""
        with self._lease() as lease:
            session = lease.session
            version = max((v for v, _ in _list_keks(session)), default=0) + 1
            _generate_kek(session, version)
            self._current = None
        return version

    def import_kek(self, version: int, kek: bytes) -> None:
        """Import an existing KEK (e.g. from a file store) as non-extractable version N."""
        if len(kek) != 32:
            raise KeyMaterialError(f"KEK version {version} has the wrong length")
        with self._lease() as lease:
            session = lease.session
            if any(v == version for v, _ in _list_keks(session)):
                raise KeyMaterialError(f"KEK version {version} already exists in the token")
            try:
                session.create_object({**_kek_template(version), Attribute.VALUE: kek})
            except p11e.PKCS11Error as exc:
                raise KeyMaterialError(f"HSM refused to import KEK version {version}") from exc
            self._current = None

    def retire_kek(self, version: int) -> None:
        """Relabel ``-retired`` and withdraw wrap/unwrap rights (see module docstring)."""
        with self._lease() as lease:
            session = lease.session
            try:
                kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=kek_label(version))
            except p11e.NoSuchKey:
                return
            try:
                kek[Attribute.WRAP] = False
                kek[Attribute.UNWRAP] = False
                kek[Attribute.LABEL] = kek_label(version, retired=True)
            except p11e.PKCS11Error as exc:
                raise KeyMaterialError(f"HSM refused to retire KEK version {version}") from exc
            lease.keks.pop(version, None)
            self._current = None

    def destroy_retired_kek(self, version: int) -> None:
        """Destroy a retired KEK for good. Only retired versions can be destroyed."""
        with self._lease() as lease:
            try:
                kek = lease.session.get_key(
                    object_class=ObjectClass.SECRET_KEY, label=kek_label(version, retired=True)
                )
            except p11e.NoSuchKey:
                raise KeyMaterialError(f"KEK version {version} is not a retired KEK") from None
            try:
                kek.destroy()
            except p11e.PKCS11Error as exc:
                raise KeyMaterialError(f"HSM refused to destroy KEK version {version}") from exc
            lease.keks.pop(version, None)

    def check(self) -> None:
        """Session up, current KEK present and working (wrap + unwrap a random key)."""
        self._current = None
        version = self.current_kek_version()
        with self._lease() as lease:
            probe = lease.session.generate_random(256)
        if self.unwrap(version, self.wrap_with(version, probe)) != probe:
            raise KeyMaterialError(f"KEK version {version} failed its round trip")
        # every other key comes from the files directory, as in the file store
        self.files.check()


def init_token_kek(
    module: str, token_label: str, pin: str, *, import_from: Path | None = None
) -> list[int]:
    """Give a freshly initialised token its first KEK; never overwrites.

    Without ``import_from`` it generates ``taxaddr-kek-v1`` inside the HSM. With a
    file key store directory it imports every active file KEK under its own version
    number, so data keys already wrapped by the file store keep unwrapping.
    Returns the versions created (empty if the token already had KEKs).
    """
    store = Pkcs11KeyStore(Path(), module, token_label, pin)
    try:
        with store._lease() as lease:
            if _list_keks(lease.session):
                return []
        if import_from is None:
            return [store.new_kek_version()]
        source = FileKeks(import_from)
        versions = source.kek_versions()
        if not versions:
            raise KeyMaterialError(f"no KEK to import in {import_from}")
        for version in versions:
            # the one place a file KEK is read on purpose: moving it into the HSM
            store.import_kek(version, source.kek(version))
        return versions
    finally:
        store.close()


# -- token helpers --------------------------------------------------------------------


def _kek_template(version: int) -> dict[Attribute, Any]:
    return {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.LABEL: kek_label(version),
        Attribute.ID: kek_label(version).encode(),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.MODIFIABLE: True,
        Attribute.WRAP: True,
        Attribute.UNWRAP: True,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.DERIVE: False,
    }


def _generate_kek(session: Any, version: int) -> None:
    template = _kek_template(version)
    for generated in (Attribute.CLASS, Attribute.KEY_TYPE, Attribute.LABEL, Attribute.ID):
        template.pop(generated)
    try:
        session.generate_key(
            KeyType.AES,
            256,
            label=kek_label(version),
            id=kek_label(version).encode(),
            store=True,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template=template,
        )
    except p11e.PKCS11Error as exc:
        raise KeyMaterialError(f"HSM refused to generate KEK version {version}") from exc


def _list_keks(session: Any) -> list[tuple[int, bool]]:
    """(version, retired) of every taxaddr KEK in the token."""
    found = []
    try:
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
            match = _LABEL_RE.match(obj[Attribute.LABEL])
            if match:
                found.append((int(match.group(1)), match.group(2) is not None))
    except _SESSION_ERRORS:
        raise
    except p11e.PKCS11Error as exc:
        raise KeyMaterialError("listing KEKs in the PKCS#11 token failed") from exc
    return found


def _find_kek(session: Any, version: int) -> Any:
    try:
        return session.get_key(object_class=ObjectClass.SECRET_KEY, label=kek_label(version))
    except p11e.NoSuchKey:
        raise KeyMaterialError(
            f"KEK version {version} not in the PKCS#11 token (retired or never created)"
        ) from None
    except p11e.MultipleObjectsReturned:
        raise KeyMaterialError(f"KEK version {version} is ambiguous in the token") from None
