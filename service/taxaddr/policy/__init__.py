"""Where a disclosure is decided: the Rego policy in ``policies/`` behind one interface.

``get_policy_engine(settings)`` is the one place the implementation is chosen
(``embedded`` regorus in-process, or an ``opa`` server). ``build_input`` builds
the contract's policy input from verified facts only: no TIN, name or address
ever reaches the policy.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taxaddr.config import Settings
from taxaddr.policy.engine import DECISION_PATH, DECISION_REF, Decision, PolicyEngine

__all__ = [
    "DECISION_PATH",
    "DECISION_REF",
    "Decision",
    "PolicyEngine",
    "address_complete",
    "build_input",
    "get_policy_engine",
    "reset_policy_engines",
]

_ENGINES: dict[tuple[object, ...], PolicyEngine] = {}
_LOCK = threading.Lock()


def get_policy_engine(settings: Settings) -> PolicyEngine:
    """The engine the settings select, built once per distinct configuration."""
    key: tuple[object, ...] = (
        settings.policy_engine,
        str(settings.policy_dir.resolve()),
        settings.opa_url,
        settings.opa_timeout_ms,
    )
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _make(settings)
            _ENGINES[key] = engine
        return engine


def reset_policy_engines() -> None:
    """Forget cached engines (tests; a policy change on disk needs a restart otherwise)."""
    with _LOCK:
        _ENGINES.clear()


def _make(settings: Settings) -> PolicyEngine:
    if settings.policy_engine == "opa":
        from taxaddr.policy.opa import OpaPolicyEngine  # noqa: PLC0415

        if not settings.opa_url:  # settings validation already refuses this
            from taxaddr.errors import ConfigError  # noqa: PLC0415

            raise ConfigError("TAXADDR_POLICY_ENGINE=opa needs TAXADDR_OPA_URL")
        return OpaPolicyEngine(settings.opa_url, settings.opa_timeout_ms)
    from taxaddr.policy.embedded import EmbeddedPolicyEngine  # noqa: PLC0415

    return EmbeddedPolicyEngine(settings.policy_dir)


def address_complete(address: Mapping[str, Any] | None) -> bool:
    """True when street, city, state and zip are all non-empty strings (6103(i)(2)(B))."""
    if not isinstance(address, Mapping):
        return False
    return all(
        isinstance(address.get(part), str) and address[part].strip()
        for part in ("street", "city", "state", "zip")
    )


def build_input(
    *,
    requester: Mapping[str, Any],
    case: Mapping[str, Any],
    usage: int,
    requester_usage: Mapping[str, Any],
    subject_ref: str,
    address_complete: bool,
    tax_periods: Sequence[str],
    statute: str,
    reason: str,
    orders: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The contract's policy input document.

    ``requester`` is the registered identity (only ``id``, ``agency`` and
    ``role`` are kept); ``case`` is ``VerifiedCase.policy_case(pseudonym_key)``;
    ``usage`` the case's disclosures so far; ``requester_usage`` the requester's
    ``open_cases`` and ``subjects_24h`` (:mod:`taxaddr.disclosure.limits`);
    ``orders`` the stays in force covering the request (:mod:`taxaddr.cases.orders`);
    ``now`` an aware datetime (default: the current time), rendered as RFC 3339 UTC to the second.
    """
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        raise ValueError("build_input needs an aware datetime for now")
    return {
        "now": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "requester": {k: requester.get(k) for k in ("id", "agency", "role")},
        "case": dict(case),
        "case_usage": {"disclosures": usage},
        "requester_usage": {k: requester_usage.get(k) for k in ("open_cases", "subjects_24h")},
        "orders": [{k: o.get(k) for k in ("jti", "number", "court")} for o in orders],
        "request": {
            "subject_ref": subject_ref,
            "address_complete": bool(address_complete),
            "tax_periods": list(tax_periods),
            "statute": statute,
            "reason": reason,
        },
    }
