"""What the access log and metrics may know about one request (no PII)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Trace:
    """One request's log and metrics fields, filled in by the edge as it answers."""

    request_id: str
    requester_id: str | None = None
    agency: str | None = None
    role: str | None = None
    outcome: str | None = None
    code: str | None = None
    leaf_index: int | None = None
    client_request_id: str | None = None


# The metrics outcome of an answer that appended no leaf, by status (CONTRACT "Metrics"):
# only answers that appended a leaf count as disclosed, denied or no_match, so metric
# totals equal audit-log totals.
_THROTTLED_STATUS = 429
_SERVER_ERROR = 500


def unlogged_outcome(status: int) -> str:
    """The metrics outcome of an answer that appended no audit leaf: ``throttled`` (429),
    ``error`` (5xx) or ``invalid`` (413, 422, 431 and a certificate nobody registered)."""
    if status == _THROTTLED_STATUS:
        return "throttled"
    return "error" if status >= _SERVER_ERROR else "invalid"
