"""An OPA bundle (tar.gz) of the decision policy, for OPA servers.

Layout: ``.manifest`` (``revision`` = the policy version, ``roots`` = the
package paths and data paths the bundle owns), each decision module under its
package path, and each second-level data object as ``<a>/<b>/data.json`` (so
``{"taxaddr": {"policy_data": …}}`` lands at ``taxaddr/policy_data/data.json``).
``*_test.rego`` files stay out: a production OPA evaluates decisions, not
tests. The archive is reproducible: sorted entries, zero mtimes, no owners.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from taxaddr.errors import UsageError
from taxaddr.policy.sources import PolicySources


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    revision: str
    roots: tuple[str, ...]
    files: tuple[str, ...]


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


def write_bundle(sources: PolicySources, out: Path) -> BundleInfo:
    """Write the bundle to ``out`` (replacing it); return what was written."""
    files, roots = bundle_files(sources)
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
    return BundleInfo(path=out, revision=sources.version, roots=roots, files=tuple(sorted(files)))


def _package_of(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("package "):
            return stripped.split()[1]
    return None


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
