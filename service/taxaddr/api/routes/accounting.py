"""``POST /v1/accounting/subject``: one taxpayer's accounting of disclosures (role
disclosure_officer, § 6103(p)(3)(A)).

Thin edge: the body's shape is checked here; :mod:`taxaddr.reports.accounting` reads
the records, appends the lookup's leaf and proves each entry, in one write transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taxaddr.api.deps import get_service, require_role
from taxaddr.disclosure.identity import Requester
from taxaddr.disclosure.request import TIN_PATTERN, RequestId
from taxaddr.errors import NoUniqueMatch
from taxaddr.metrics import ACCOUNTING_LOOKUPS
from taxaddr.reports.accounting import MIN_REASON_CHARS, Officer, check_reason, subject_accounting

router = APIRouter(prefix="/v1/accounting", tags=["accounting"])
DisclosureOfficer = Annotated[Requester, Depends(require_role("disclosure_officer"))]


class _Subject(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    tin: Annotated[str, StringConstraints(min_length=9, max_length=11, pattern=TIN_PATTERN)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AccountingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    request_id: RequestId
    subject: _Subject
    reason: Annotated[str, StringConstraints(max_length=4000)] = Field(
        description=f"why the taxpayer's accounting is read: at least {MIN_REASON_CHARS} "
        "characters after trimming (else 422 request_invalid)"
    )


@router.post(
    "/subject",
    responses={
        404: {"description": "no_unique_match: the name is not the stored name"},
        422: {"description": "request_invalid: body shape, or a reason under 40 characters"},
    },
)
def accounting_subject(
    request: Request, who: DisclosureOfficer, query: AccountingQuery
) -> dict[str, Any]:
    """Every disclosure of one taxpayer's address, each with its inclusion proof against
    the cited signed checkpoint; an unknown TIN is an empty list. Appends one leaf."""
    reason = check_reason(query.reason)
    svc = get_service(request)
    with svc.write() as session:
        result = subject_accounting(
            session,
            svc.keystore,
            svc.settings,
            officer=Officer(who.id, who.agency, who.role),
            request_id=query.request_id,
            tin=query.subject.tin,
            name=query.subject.name,
            reason=reason,
        )
    if result.answer is None:
        ACCOUNTING_LOOKUPS.labels(result="no_match").inc()
        raise NoUniqueMatch()
    ACCOUNTING_LOOKUPS.labels(result="listed" if result.answer["disclosures"] else "empty").inc()
    return result.answer
