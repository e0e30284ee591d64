"""The embedded engine: Rego evaluated in-process by regorus (PyPI ``gordon-to-regorus``).

A regorus ``Engine`` is bound to the thread that created it (using it, or even
cloning it, from another thread panics), so each thread builds its own engine
from the same policy sources, read once when this object is made.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import regorus

from taxaddr.errors import PolicyUnavailable
from taxaddr.policy.engine import DECISION_REF, Decision, observed, parse_result
from taxaddr.policy.sources import PolicySources, load_sources

# A probe input for readiness: unreadable on purpose, so a working policy denies it.
_PROBE: dict[str, Any] = {}

# The input's JSON text: what json.dumps(document, allow_nan=False,
# separators=(",", ":")) gives, without building an encoder on every call.
_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


class EmbeddedPolicyEngine:
    """In-process Rego; one regorus engine per thread."""

    name = "embedded"

    def __init__(self, policy_dir: Path) -> None:
        self._sources: PolicySources = load_sources(policy_dir)
        self.policy_version = self._sources.version
        self._local = threading.local()
        self._engine()  # fail at start-up, not on the first request, if the policy is broken

    @property
    def sources(self) -> PolicySources:
        return self._sources

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            try:
                engine = regorus.Engine()
                for path, text in self._sources.modules:
                    engine.add_policy(path, text)
                engine.add_data_json(self._sources.data_text)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise PolicyUnavailable(
                    f"embedded policy failed to load ({type(exc).__name__})"
                ) from None
            self._local.engine = engine
        return engine

    def _evaluate(self, document: object) -> Decision:
        engine = self._engine()
        try:
            text = _ENCODE(document)
            engine.set_input_json(text)
            raw = engine.eval_rule(DECISION_REF)
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            # Engine messages may quote input values: only the type goes out.
            raise PolicyUnavailable(
                f"embedded policy evaluation failed ({type(exc).__name__})"
            ) from None
        return parse_result(raw, self.policy_version)

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Evaluate the decision. Accepts any JSON value (a non-object is denied)."""
        return observed(self.name, lambda: self._evaluate(input))

    def check(self) -> None:
        decision = self._evaluate(_PROBE)
        if decision.allow:
            raise PolicyUnavailable("embedded policy allowed an empty input")
