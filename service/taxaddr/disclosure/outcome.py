"""What the decision core returns: one typed outcome per request.

The core decides; the edge (:mod:`taxaddr.api.routes.disclosures`) maps the outcome to
a status, the error envelope, the access log's fields and the metrics. An outcome
carries its audit leaf exactly when CONTRACT.md says the answer appends one: every
200/403/404/409 answer to a registered identity does; 413/422/429/503 answers and a
certificate nobody registered do not.

Why values and not only exceptions: the edge must know, for every answer, whether a
leaf committed (``denied`` and ``no_match`` are counted only then) and who asked
(the agency label, the access log), and a refusal with a leaf is a decision, not a
failure. The :class:`~taxaddr.errors.TaxaddrError` an outcome holds is the one the
edge raises for its single exception handler to render (one envelope, one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taxaddr.audit.log import AppendedLeaf
from taxaddr.disclosure.identity import RequesterRecord
from taxaddr.errors import NoUniqueMatch, TaxaddrError


@dataclass(slots=True)
class Caller:
    """Who asked, as far as the core established it (nothing of the subject's data).

    The edge makes it with the server's id of the request; the core fills it in step by
    step (so that the edge still knows who asked when a step fails unexpectedly).
    ``request_id`` is the server's id, replaced by a fresh canonical one when a leaf must
    carry it and it is not a canonical UUID.
    """

    request_id: str
    requester: RequesterRecord | None = None
    client_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Disclosed:
    """200: the address was disclosed; its leaf, accounting record and receipt committed."""

    caller: Caller
    answer: dict[str, Any]
    leaf: AppendedLeaf
    statute: str  # as the request named it (the edge bounds it for a metrics label)


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal: 403/409 with its committed denial leaf, or, without a leaf (``leaf`` is
    None), 422 request_invalid, 429 rate_limited or 403 requester_unknown."""

    caller: Caller
    error: TaxaddrError
    leaf: AppendedLeaf | None

    @property
    def code(self) -> str:
        """The contract code the answer carries (a policy denial's first reason)."""
        return str(getattr(self.error, "first_code", self.error.code))

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason code, in the contract's order (one for most refusals)."""
        reasons = getattr(self.error, "reasons", None)
        return tuple(reasons) if reasons else (self.code,)


@dataclass(frozen=True, slots=True)
class NoMatch:
    """404 no_unique_match: unknown TIN, name mismatch or ambiguity (its leaf committed)."""

    caller: Caller
    leaf: AppendedLeaf

    @property
    def error(self) -> TaxaddrError:
        return NoUniqueMatch()


@dataclass(frozen=True, slots=True)
class Unavailable:
    """503: a dependency failed (policy, audit log, database, keys); nothing committed."""

    caller: Caller
    error: TaxaddrError

    @property
    def code(self) -> str:
        return self.error.code


Outcome = Disclosed | Refused | NoMatch | Unavailable

__all__ = ["Caller", "Disclosed", "NoMatch", "Outcome", "Refused", "Unavailable"]
