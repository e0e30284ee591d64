r"""An OPA bundle (tar.gz) of the decision policy, for OPA servers.

Layout: ``.manifest`` (``revision`` = the policy version, ``roots`` = the
package paths and data paths the bundle owns), each decision module under its
package path, and each second-level data object as ``<a>/<b>/data.json`` (so
``{"taxaddr": {"policy_data": …}}`` lands at ``taxaddr/policy_data/data.json``).
``*_test.rego`` files stay out: a production OPA evaluates decisions, not
tests. The archive is reproducible: sorted entries, zero mtimes, no owners.

Signed bundles follow OPA's bundle signing: ``.signatures.json`` is
``{"signatures": [JWT]}``, the JWT (RS256 for an RSA key, ES256 for a P-256
key; header ``kid``) signing ``{"files": [{"name", "hash", "algorithm":
"SHA-256"}, …], "keyid": KID}`` over every other file of the bundle. OPA hashes a
structured document (a file named ``data.json`` or ``.manifest``; OPA's
``IsStructuredDoc``) over its canonical JSON (object keys sorted, no
whitespace, numbers as written, strings escaped as Go's encoder with HTML
escaping off: ``\"``, ``\\``, ``\n``, ``\r``, ``\t``, other control
characters as ``\u00xx``, U+2028/U+2029 escaped, everything else raw UTF-8) and
any other file (``*.rego``, any other ``*.json``) over its bytes; ``file_hash``
does the same, checked byte for byte against ``opa sign`` and OPA's own
verification in the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from taxaddr.errors import UsageError
from taxaddr.policy.sources import PolicySources

SIGNATURES_FILE = ".signatures.json"


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    revision: str
    roots: tuple[str, ...]
    files: tuple[str, ...]
    key_id: str | None = None


@dataclass(frozen=True)
class BundleSigningKey:
    """A private key (PEM) that signs bundles, and the key id OPA verifies it under."""

    pem: bytes
    key_id: str

    @classmethod
    def load(cls, path: Path, key_id: str) -> BundleSigningKey:
        if not key_id.strip():
            raise UsageError("--key-id must not be empty")
        try:
            return cls(path.read_bytes(), key_id)
        except OSError as exc:
            raise UsageError(
                f"cannot read signing key {path} ({exc.strerror or type(exc).__name__})"
            ) from None

    def algorithm_and_key(self) -> tuple[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
        try:
            key = serialization.load_pem_private_key(self.pem, password=None)
        except (ValueError, TypeError):
            raise UsageError("the signing key is not an unencrypted PEM private key") from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise UsageError("an RSA signing key must have at least 2048 bits")
            return "RS256", key
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return "ES256", key
        raise UsageError("the signing key must be RSA (RS256) or EC P-256 (ES256)")

    def sign(self, files: dict[str, bytes]) -> bytes:
        """The ``.signatures.json`` bytes for ``files`` (every file but itself)."""
        algorithm, key = self.algorithm_and_key()
        payload = {
            "files": [
                {"name": name, "hash": file_hash(name, files[name]), "algorithm": "SHA-256"}
                for name in sorted(files)
            ],
            "keyid": self.key_id,
        }
        token = jwt.encode(payload, key, algorithm=algorithm, headers={"kid": self.key_id})
        return _json({"signatures": [token]})


def file_hash(name: str, content: bytes) -> str:
    """SHA-256 (hex) of a bundle file as OPA computes it for its signature."""
    base = PurePosixPath(name).name
    if base == "data.yaml":
        # OPA converts YAML to JSON first; bundles written here never hold YAML.
        raise UsageError(f"cannot hash {name}: YAML data files are not supported")
    if base in _STRUCTURED:
        value = json.loads(content, parse_float=_RawNumber, parse_int=_RawNumber)
        return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()
    return hashlib.sha256(content).hexdigest()


# The files OPA parses before hashing (bundle.IsStructuredDoc, by base name).
_STRUCTURED = frozenset({"data.json", ".manifest", SIGNATURES_FILE})


class _RawNumber(str):
    """A JSON number kept as written (OPA hashes json.Number text)."""


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = (f"{_string(k)}:{_canonical(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, _RawNumber):
        return str.__str__(value)
    if isinstance(value, str):
        return _string(value)
    return json.dumps(value)  # true, false, null


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    """A JSON string as Go's encoding/json writes it with SetEscapeHTML(false)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")  # a lone surrogate: Go decodes it as U+FFFD
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def bundle_files(sources: PolicySources) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The bundle's files (path -> bytes) and its roots."""
    files: dict[str, bytes] = {}
    roots: set[str] = set()
    for package in sources.packages():
        roots.add(package.replace(".", "/"))
    for rel, text in sources.modules:
        declared = _package_of(text)
        prefix = declared.replace(".", "/") if declared is not None else "policies"
        files[f"{prefix}/{PurePosixPath(rel).name}"] = text.encode("utf-8")
    for top, value in sorted(sources.data.items()):
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for second, inner in sorted(value.items()):
                files[f"{top}/{second}/data.json"] = _json(inner)
                roots.add(f"{top}/{second}")
        else:
            files[f"{top}/data.json"] = _json(value)
            roots.add(top)
    files[".manifest"] = _json({"revision": sources.version, "roots": sorted(roots)})
    return files, tuple(sorted(roots))


def write_bundle(
    sources: PolicySources, out: Path, signing_key: BundleSigningKey | None = None
) -> BundleInfo:
    """Write the bundle to ``out`` (replacing it), signed when a key is given."""
    files, roots = bundle_files(sources)
    if signing_key is not None:
        files[SIGNATURES_FILE] = signing_key.sign(files)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            content = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(packed.getvalue())
    except OSError as exc:
        raise UsageError(
            f"cannot write bundle to {out} ({exc.strerror or type(exc).__name__})"
        ) from None
    return BundleInfo(
        path=out,
        revision=sources.version,
        roots=roots,
        files=tuple(sorted(files)),
        key_id=signing_key.key_id if signing_key else None,
    )


def _package_of(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("package "):
            return stripped.split()[1]
    return None


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
