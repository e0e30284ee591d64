"""What the ``taxaddr policy`` commands do (the CLI only parses and renders)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taxaddr.config import Settings
from taxaddr.errors import UsageError
from taxaddr.policy import get_policy_engine
from taxaddr.policy.bundle import BundleInfo, BundleSigningKey, write_bundle
from taxaddr.policy.engine import Decision
from taxaddr.policy.sources import load_sources


def evaluate_file(settings: Settings, path: Path) -> Decision:
    """Evaluate the policy on the JSON document in ``path`` with the configured engine.

    Any JSON value is evaluated (missing or wrongly typed fields are denied by
    the policy); a file that cannot be read or is not JSON is a UsageError.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read input file {path} ({type(exc).__name__})") from None
    try:
        document: Any = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise UsageError(f"input file {path} is not JSON") from None
    return get_policy_engine(settings).decide(document)


def build_bundle(
    settings: Settings,
    out: Path,
    *,
    signing_key: Path | None = None,
    key_id: str | None = None,
) -> BundleInfo:
    """Write an OPA bundle of ``settings.policy_dir`` to ``out``; signed when a key is given."""
    if (signing_key is None) != (key_id is None):
        raise UsageError("--signing-key and --key-id go together")
    signer = (
        BundleSigningKey.load(signing_key, key_id)
        if signing_key is not None and key_id is not None
        else None
    )
    return write_bundle(load_sources(settings.policy_dir), out, signer)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259), though Python's parser accepts them.
    raise ValueError(name)
