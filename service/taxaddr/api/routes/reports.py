"""``GET /v1/reports/compliance``: the signed compliance report (role oversight).

Thin edge: checks the role and the parameters, calls
:func:`taxaddr.reports.compliance.produce_report`, and renders its bytes and signature.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from taxaddr.api.deps import Oversight, get_service
from taxaddr.api.routes.oversight import DayParam, period
from taxaddr.errors import RequestInvalid
from taxaddr.reports import transparency
from taxaddr.reports.compliance import produce_report
from taxaddr.reports.document import FORMATS

router = APIRouter(tags=["oversight"])

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "pdf": "application/pdf",
}


@router.get(
    "/v1/reports/compliance",
    responses={404: {"description": "case_unknown: no case reference with that case number"}},
)
def report_endpoint(
    request: Request,
    _who: Oversight,
    from_: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    to: DayParam = None,
    fmt: Annotated[str, Query(alias="format", max_length=8)] = "json",
    case: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The signed compliance report; the Ed25519 signature (base64) is in ``X-Signature``."""
    if fmt not in FORMATS:
        raise RequestInvalid("'format' must be json, csv or pdf")
    from_day, to_day = period(from_, to, required=True)
    svc = get_service(request)
    result = produce_report(
        svc.engine,
        svc.keystore,
        svc.settings,
        from_day=from_day,
        to_day=to_day,
        fmt=fmt,
        case_number=case or None,
    )
    filename = f"taxaddr-compliance-{from_day.isoformat()}-{to_day.isoformat()}.{fmt}"
    return Response(
        result.data,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "X-Signature": result.signature,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/v1/reports/transparency")
def transparency_endpoint(
    request: Request,
    _who: Oversight,
    from_: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    to: DayParam = None,
    fmt: Annotated[str, Query(alias="format", max_length=8)] = "json",
    threshold: Annotated[int, Query(ge=1, le=1_000_000)] = transparency.DEFAULT_THRESHOLD,
) -> Response:
    """The signed public transparency report (counts below ``threshold`` shown as
    ``"<K"``); the Ed25519 signature (base64) is in ``X-Signature``."""
    if fmt not in FORMATS:
        raise RequestInvalid("'format' must be json, csv or pdf")
    from_day, to_day = period(from_, to, required=True)
    svc = get_service(request)
    _report, data, signature = transparency.produce_transparency(
        svc.engine,
        svc.keystore,
        svc.settings,
        from_day=from_day,
        to_day=to_day,
        threshold=threshold,
        fmt=fmt,
    )
    name = f"taxaddr-transparency-{from_day.isoformat()}-{to_day.isoformat()}.{fmt}"
    return Response(
        data,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "X-Signature": signature,
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )
