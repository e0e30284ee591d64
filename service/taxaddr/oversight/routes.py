"""Oversight HTTP routes: /metrics, the summary, the dashboard and signed reports.

Thin edges: each route checks the role, parses its parameters, calls one
function of :mod:`taxaddr.oversight` or :mod:`taxaddr.reports`, and renders.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from taxaddr import metrics
from taxaddr.api.deps import get_service, require_role
from taxaddr.audit.checkpoint import open_checkpoint
from taxaddr.audit.log import read_head
from taxaddr.audit.service import audit_verifier, latest_checkpoint
from taxaddr.db import write_transaction
from taxaddr.disclosure.core import DisclosureService
from taxaddr.disclosure.identity import Requester
from taxaddr.errors import RequestInvalid, TaxaddrError
from taxaddr.oversight import exposition
from taxaddr.oversight.dashboard import CheckpointView, build_view, default_period, render_html
from taxaddr.oversight.summary import check_period, parse_day, summarize
from taxaddr.oversight.verification import VerificationMonitor, verify_now
from taxaddr.reports.compliance import produce_report
from taxaddr.reports.document import FORMATS

router = APIRouter(tags=["oversight"])
Oversight = Annotated[Requester, Depends(require_role("oversight"))]
Scraper = Annotated[Requester, Depends(require_role("monitor", "oversight"))]
DayParam = Annotated[str | None, Query(max_length=10)]

MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "pdf": "application/pdf",
}

_monitors: dict[int, VerificationMonitor] = {}
_monitors_lock = threading.Lock()


def monitor_for(svc: DisclosureService) -> VerificationMonitor:
    """One verification monitor per service (per app)."""
    with _monitors_lock:
        monitor = _monitors.get(id(svc))
        if monitor is None:
            monitor = VerificationMonitor(
                lambda: verify_now(svc.engine, svc.keystore, svc.settings)
            )
            _monitors[id(svc)] = monitor
        return monitor


@router.get("/metrics", response_class=Response)
def metrics_endpoint(request: Request, _who: Scraper) -> Response:
    """Prometheus text exposition (roles monitor and oversight)."""
    svc = get_service(request)
    try:
        with svc.read_session() as session:
            metrics.AUDIT_TREE_SIZE.set(read_head(session).tree_size)
    except (TaxaddrError, SQLAlchemyError):
        # A broken database must not hide the metrics that report it (append
        # failures, policy errors): serve them with the last known tree size.
        pass
    else:
        monitor_for(svc).refresh_in_background()
    return Response(exposition.exposition(), media_type=exposition.MEDIA_TYPE)


def _period(from_: str | None, to: str | None, *, required: bool) -> tuple[Any, Any]:
    if not required and from_ is None and to is None:
        return default_period()
    from_day, to_day = parse_day(from_, "from"), parse_day(to, "to")
    check_period(from_day, to_day)
    return from_day, to_day


@router.get("/v1/oversight/summary")
def summary_endpoint(
    request: Request,
    _who: Oversight,
    from_: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    to: DayParam = None,
) -> dict[str, Any]:
    """Counts by day, agency, statute, outcome and reason for ``from``..``to`` (UTC days)."""
    from_day, to_day = _period(from_, to, required=True)
    with get_service(request).read_session() as session:
        return summarize(session, from_day, to_day)


@router.get("/oversight", response_class=HTMLResponse)
def dashboard_endpoint(
    request: Request,
    _who: Oversight,
    from_: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    to: DayParam = None,
) -> HTMLResponse:
    """The dashboard: charts and tables of the same counts, the log's checkpoint and health."""
    from_day, to_day = _period(from_ or None, to or None, required=False)
    svc = get_service(request)
    with write_transaction(svc.engine) as session:
        note = latest_checkpoint(session, svc.keystore, svc.settings)
    signed = open_checkpoint(note, audit_verifier(svc.keystore, svc.settings))
    checkpoint = CheckpointView(
        tree_size=signed.tree_size,
        root_hash=signed.root_hash.hex(),
        note=note,
        verification=monitor_for(svc).current(signed.tree_size),
    )
    with svc.read_session() as session:
        view = build_view(session, from_day, to_day, checkpoint=checkpoint)
    return HTMLResponse(render_html(view))


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
    from_day, to_day = _period(from_, to, required=True)
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
