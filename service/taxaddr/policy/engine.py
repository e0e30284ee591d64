"""The policy engine interface, the decision value and the checks both engines share.

A :class:`Decision` is a value: code compares ``allow`` and never infers
permission from the absence of an error. Every engine failure is a
:class:`~taxaddr.errors.PolicyUnavailable` (fail closed, 503), never an allow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from taxaddr.errors import PolicyUnavailable, order_reasons
from taxaddr.metrics import POLICY_DECISIONS, POLICY_SECONDS

# Where the decision lives: Rego package taxaddr.disclosure, rule decision.
PACKAGE = "taxaddr.disclosure"
RULE = "decision"
DECISION_REF = f"data.{PACKAGE}.{RULE}"
DECISION_PATH = f"{PACKAGE.replace('.', '/')}/{RULE}"


@dataclass(frozen=True)
class Decision:
    """The policy's answer. ``allow`` is true only when ``reasons`` is empty."""

    allow: bool
    reasons: tuple[str, ...]
    policy_version: str

    def as_json(self) -> dict[str, Any]:
        """The contract's result document ``{"allow", "reasons"}``."""
        return {"allow": self.allow, "reasons": list(self.reasons)}


@runtime_checkable
class PolicyEngine(Protocol):
    """Evaluates ``data.taxaddr.disclosure.decision``. Thread-safe; fails closed."""

    name: str

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Evaluate the policy on ``input``; raise PolicyUnavailable on any failure."""
        ...

    def check(self) -> None:
        """Readiness: raise PolicyUnavailable unless the engine can decide now."""
        ...


def parse_result(raw: object, policy_version: str) -> Decision:
    """Validate an engine's raw result; anything but a well-formed decision fails closed."""
    if not isinstance(raw, Mapping):
        raise PolicyUnavailable("policy result is not an object (undefined decision?)")
    allow = raw.get("allow")
    reasons = raw.get("reasons")
    if not isinstance(allow, bool):
        raise PolicyUnavailable("policy result has no boolean 'allow'")
    if not isinstance(reasons, list | tuple) or not all(isinstance(r, str) for r in reasons):
        raise PolicyUnavailable("policy result 'reasons' is not a list of strings")
    if allow and reasons:
        raise PolicyUnavailable("policy result allows despite reasons")
    if not allow and not reasons:
        # A deny without a code cannot be answered or audited: treat as malformed.
        raise PolicyUnavailable("policy result denies without a reason")
    return Decision(
        allow=allow, reasons=tuple(order_reasons(list(reasons))), policy_version=policy_version
    )


def observed(engine: str, evaluate: Callable[[], Decision]) -> Decision:
    """Run one evaluation, recording the decision metrics (allow, deny or error)."""
    start = time.perf_counter()
    try:
        decision = evaluate()
    except PolicyUnavailable:
        POLICY_DECISIONS.labels(engine=engine, result="error").inc()
        raise
    finally:
        POLICY_SECONDS.observe(time.perf_counter() - start)
    POLICY_DECISIONS.labels(engine=engine, result="allow" if decision.allow else "deny").inc()
    return decision
