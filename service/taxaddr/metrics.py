"""Prometheus metrics named by the contract.

Label values come only from bounded sets (registered agencies, allow-listed
statutes, contract codes, engine names). Never a TIN, name, address or case
number. Unknown values are folded into ``other`` by :func:`bounded`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# outcome: disclosed, denied, no_match (answers that appended one audit leaf, so these
# equal the log's totals), invalid (413, 422, 431, an unregistered certificate),
# throttled (429) or error (5xx): no leaf.
DISCLOSURE_REQUESTS = Counter(
    "taxaddr_disclosure_requests_total",
    "Disclosure requests answered, by requester agency, outcome and reason code.",
    ["agency", "outcome", "reason"],
)
DISCLOSURES = Counter(
    "taxaddr_disclosures_total",
    "Addresses disclosed, by requester agency and statute.",
    ["agency", "statute"],
)
POLICY_DECISIONS = Counter(
    "taxaddr_policy_decisions_total",
    "Policy decisions, by engine and result (allow, deny, error).",
    ["engine", "result"],
)
POLICY_SECONDS = Histogram(
    "taxaddr_policy_evaluation_seconds",
    "Time to evaluate the disclosure policy.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
REQUEST_SECONDS = Histogram(
    "taxaddr_disclosure_request_seconds",
    "Time to answer a disclosure request, end to end inside the service.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# With several server workers (prometheus_client's multiprocess mode) a gauge shows the
# value most recently set by any worker; both are set from the shared database.
AUDIT_TREE_SIZE = Gauge(
    "taxaddr_audit_tree_size",
    "Number of leaves in the audit log.",
    multiprocess_mode="mostrecent",
)
AUDIT_APPEND_FAILURES = Counter(
    "taxaddr_audit_append_failures_total", "Audit appends that failed (no disclosure followed)."
)
AUDIT_VERIFICATION_OK = Gauge(
    "taxaddr_audit_verification_ok",
    "1 if the last full verification of the audit log against its signed checkpoint passed.",
    multiprocess_mode="mostrecent",
)

# Read from the log itself at scrape time (every replica reports the same numbers: use
# max by (action) across replicas, not sum).
TRUST_CHANGES = Gauge(
    "taxaddr_trust_changes",
    "Trust-change entries in the audit log (issuer keys, requesters, revocations, KEK, "
    "orders, policy versions, dual-control steps), by action.",
    ["action"],
    multiprocess_mode="mostrecent",
)

# Taxpayer-accounting lookups (POST /v1/accounting/subject, `taxaddr accounting subject`)
# by result: listed (disclosures found), empty (none), no_match (name not the stored one).
ACCOUNTING_LOOKUPS = Counter(
    "taxaddr_accounting_lookups_total",
    "Taxpayer-accounting lookups (one audit leaf each), by result.",
    ["result"],
)

# Set from the database by every decision (the stays it reads) and every order applied.
ORDERS_IN_FORCE = Gauge(
    "taxaddr_orders_in_force",
    "Court-ordered stays in force (nbf <= now < exp, not lifted), read from the database.",
    multiprocess_mode="mostrecent",
)

OTHER = "other"


def bounded(value: str | None, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is in the bounded set ``allowed``, else ``other``."""
    if value is None:
        return "none"
    return value if value in set(allowed) else OTHER
