"""Reading ``policies/``: the Rego modules, the data document and the policy version.

The policy version is ``sha256:<hex>`` over the decision modules (``*.rego``
except ``*_test.rego``) and ``data.json``, in sorted path order, each framed as
``path NUL length NUL bytes``. The OPA bundle built from the same directory
carries the same string as its ``.manifest`` revision, so both engines report
the same version for the same policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxaddr.errors import PolicyUnavailable

DATA_FILE = "data.json"
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_.]*)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PolicySources:
    """The decision policy as loaded from one directory."""

    modules: tuple[tuple[str, str], ...]  # (path relative to the policy dir, Rego text)
    data_text: str
    data: dict[str, Any]
    version: str

    def packages(self) -> tuple[str, ...]:
        """The Rego packages the modules declare, sorted."""
        found = {m.group(1) for _, text in self.modules for m in _PACKAGE.finditer(text)}
        return tuple(sorted(found))


def is_test_module(path: Path) -> bool:
    return path.name.endswith("_test.rego")


def load_sources(policy_dir: Path) -> PolicySources:
    """Read the policy directory; anything missing or unreadable is PolicyUnavailable."""
    try:
        rego_paths = sorted(
            p for p in policy_dir.rglob("*.rego") if p.is_file() and not is_test_module(p)
        )
        modules = tuple(
            (p.relative_to(policy_dir).as_posix(), p.read_text(encoding="utf-8"))
            for p in rego_paths
        )
        data_text = (policy_dir / DATA_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyUnavailable(
            f"policy directory {policy_dir} unreadable ({type(exc).__name__})"
        ) from None
    if not modules:
        raise PolicyUnavailable(f"no Rego policy in {policy_dir}")
    try:
        data = json.loads(data_text)
    except ValueError:
        raise PolicyUnavailable(f"{DATA_FILE} in {policy_dir} is not JSON") from None
    if not isinstance(data, dict):
        raise PolicyUnavailable(f"{DATA_FILE} in {policy_dir} is not a JSON object")
    files = [(path, text.encode("utf-8")) for path, text in modules]
    files.append((DATA_FILE, data_text.encode("utf-8")))
    return PolicySources(
        modules=modules, data_text=data_text, data=data, version=policy_version(files)
    )


def policy_version(files: list[tuple[str, bytes]]) -> str:
    """``sha256:<hex>`` over (path, bytes) pairs in sorted path order, each one framed."""
    digest = hashlib.sha256()
    for path, content in sorted(files):
        digest.update(path.encode("utf-8") + b"\0" + str(len(content)).encode() + b"\0")
        digest.update(content)
    return "sha256:" + digest.hexdigest()
