"""One exception root with the contract's stable codes.

Every refusal the service makes is a :class:`TaxaddrError` subclass carrying a
``code`` from CONTRACT.md and an HTTP ``status``. Messages are for humans and
must never contain a TIN, a name, an address or a raw case token.
"""

from __future__ import annotations

from typing import ClassVar


class TaxaddrError(Exception):
    """Root of every refusal. ``code`` is stable, ``message`` may change."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message()
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ")


# --- operator / CLI errors (no HTTP status of their own) -------------------------------


class ConfigError(TaxaddrError):
    code = "config_invalid"
    status = 500


class UsageError(TaxaddrError):
    """A CLI argument or input file that cannot be used."""

    code = "usage_error"
    status = 400


class KeyMaterialError(TaxaddrError):
    """Key material missing, unreadable, of the wrong kind or failing to unwrap."""

    code = "keys_unavailable"
    status = 503


class IntegrityError(TaxaddrError):
    """Stored ciphertext, wrapped key or log entry failed an integrity check."""

    code = "integrity_error"
    status = 500


class ImportRowError(TaxaddrError):
    """One imported row is invalid. ``field`` names the column, never its value."""

    code = "import_row_invalid"
    status = 422

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


# --- the contract's refusal codes ------------------------------------------------------


class RequesterUnknown(TaxaddrError):
    code = "requester_unknown"
    status = 403


class RequesterRevoked(TaxaddrError):
    code = "requester_revoked"
    status = 403


class RoleForbidden(TaxaddrError):
    code = "role_forbidden"
    status = 403


class CaseError(TaxaddrError):
    """Root of every case-reference verification refusal."""

    code = "case_reference_malformed"
    status = 403


class CaseReferenceMalformed(CaseError):
    code = "case_reference_malformed"


class CaseSignatureInvalid(CaseError):
    code = "case_signature_invalid"


class CaseIssuerUntrusted(CaseError):
    code = "case_issuer_untrusted"


class CaseAlgorithmForbidden(CaseError):
    code = "case_algorithm_forbidden"


class CaseAudienceMismatch(CaseError):
    code = "case_audience_mismatch"


class CaseExpired(CaseError):
    code = "case_expired"


class CaseNotYetValid(CaseError):
    code = "case_not_yet_valid"


class CaseRevoked(CaseError):
    code = "case_revoked"


class PolicyDenied(TaxaddrError):
    """The policy said no. ``reasons`` holds every policy code, in contract order."""

    code = "policy_denied"
    status = 403

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        first = self.reasons[0] if self.reasons else "policy_denied"
        super().__init__(first.replace("_", " "))

    @property
    def first_code(self) -> str:
        return self.reasons[0] if self.reasons else "policy_denied"


class CaseQuotaExhausted(TaxaddrError):
    code = "case_quota_exhausted"
    status = 403


class RequestReplayed(TaxaddrError):
    code = "request_replayed"
    status = 409


class NoUniqueMatch(TaxaddrError):
    code = "no_unique_match"
    status = 404

    @classmethod
    def default_message(cls) -> str:
        return "no unique record matches the request"


class NotFound(TaxaddrError):
    """A well-formed read of something that does not exist (yet): a proof for a tree
    larger than the log, an unknown route."""

    code = "not_found"
    status = 404


class RequestInvalid(TaxaddrError):
    code = "request_invalid"
    status = 422


class RequestTooLarge(TaxaddrError):
    code = "request_too_large"
    status = 413


class RequestHeaderTooLarge(TaxaddrError):
    """Request line and headers past the server's size or count limit (answered at the
    HTTP edge, before any body is read; no leaf)."""

    code = "request_header_too_large"
    status = 431


class RateLimited(TaxaddrError):
    code = "rate_limited"
    status = 429

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class PolicyUnavailable(TaxaddrError):
    code = "policy_unavailable"
    status = 503


class AuditUnavailable(TaxaddrError):
    code = "audit_unavailable"
    status = 503


class DatabaseUnavailable(TaxaddrError):
    code = "database_unavailable"
    status = 503


class ServiceUnreachable(TaxaddrError):
    """`taxaddr request`: the API could not be reached (connection or TLS handshake failed)."""

    code = "service_unreachable"
    status = 503


class WitnessQuorumPending(TaxaddrError):
    """The offline proof needs a checkpoint cosigned by TAXADDR_WITNESS_QUORUM witnesses,
    and none covering the leaf has that many yet (ask again later)."""

    code = "witness_quorum_pending"
    status = 503


# -- dual control (trust changes over the API) ------------------------------------------


class ChangeUnknown(TaxaddrError):
    code = "change_unknown"
    status = 404


class ApprovalForbidden(TaxaddrError):
    """The proposer of a pending change cannot approve it: a second admin must."""

    code = "approval_forbidden"
    status = 403


class ChangeExpired(TaxaddrError):
    code = "change_expired"
    status = 403


class ChangeNotPending(TaxaddrError):
    """The change was already applied, refused or expired (e.g. a concurrent approval won)."""

    code = "change_not_pending"
    status = 409


# -- court orders (stays) -----------------------------------------------------------------


class OrderError(TaxaddrError):
    """Root of every court-order refusal (verification as strict as a case reference's)."""

    code = "order_malformed"
    status = 403


class OrderMalformed(OrderError):
    code = "order_malformed"
    status = 422


class OrderSignatureInvalid(OrderError):
    code = "order_signature_invalid"


class OrderIssuerUntrusted(OrderError):
    code = "order_issuer_untrusted"


class OrderAlgorithmForbidden(OrderError):
    code = "order_algorithm_forbidden"


class OrderAudienceMismatch(OrderError):
    code = "order_audience_mismatch"


class OrderExpired(OrderError):
    code = "order_expired"


class OrderUnknown(OrderError):
    """A lift naming a stay that was never applied."""

    code = "order_unknown"
    status = 404


class OrderReplayed(OrderError):
    """The same order (jti) applied twice."""

    code = "order_replayed"
    status = 409


# The order in which the contract lists denial codes; a request with several
# problems answers the first of its reasons in this order.
CODE_ORDER: tuple[str, ...] = (
    "requester_unknown",
    "requester_revoked",
    "role_forbidden",
    "disclosure_stayed",
    "case_reference_malformed",
    "case_signature_invalid",
    "case_issuer_untrusted",
    "case_algorithm_forbidden",
    "case_audience_mismatch",
    "case_expired",
    "case_not_yet_valid",
    "case_revoked",
    "proceeding_not_criminal",
    "statute_not_criminal",
    "statute_not_on_case",
    "agency_mismatch",
    "requester_not_on_case",
    "subject_not_on_case",
    "tax_period_not_covered",
    "reason_insufficient",
    "address_incomplete",
    "case_quota_exhausted",
    "requester_caseload_exceeded",
    "requester_volume_exceeded",
    "request_replayed",
    "no_unique_match",
    "request_invalid",
    "request_too_large",
    "request_header_too_large",
    "rate_limited",
    "policy_unavailable",
    "audit_unavailable",
)


def order_reasons(reasons: list[str]) -> list[str]:
    """Sort policy reasons into contract order; unknown codes go last, deduplicated."""
    rank = {code: i for i, code in enumerate(CODE_ORDER)}
    return sorted(set(reasons), key=lambda c: (rank.get(c, len(rank)), c))
