"""Oversight HTTP routes: /metrics, the summary and the dashboard.

Thin edges: each route checks the role, parses its parameters, calls one function of
:mod:`taxaddr.oversight`, and renders. The log-verification monitor the dashboard and
/metrics share is the app's (:func:`verification_monitor`), made once in ``create_app``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from taxaddr import metrics
from taxaddr.api.deps import Oversight, get_service, require_role
from taxaddr.audit.admin import TRUST_CHANGE_GAUGE
from taxaddr.audit.checkpoint import open_checkpoint
from taxaddr.audit.log import read_head
from taxaddr.audit.service import audit_verifier, latest_checkpoint
from taxaddr.audit.summary import check_period, parse_day, summarize
from taxaddr.cases.orders import stays_in_force
from taxaddr.db import write_transaction
from taxaddr.disclosure.identity import Requester
from taxaddr.errors import TaxaddrError
from taxaddr.oversight import exposition
from taxaddr.oversight.dashboard import CheckpointView, build_view, default_period, render_html
from taxaddr.oversight.verification import VerificationMonitor

router = APIRouter(tags=["oversight"])
Scraper = Annotated[Requester, Depends(require_role("monitor", "oversight"))]
DayParam = Annotated[str | None, Query(max_length=10)]


def verification_monitor(request: Request) -> VerificationMonitor:
    """The app's verification monitor (one per app: its last result is cached)."""
    monitor: VerificationMonitor = request.app.state.verification_monitor
    return monitor


@router.get("/metrics", response_class=Response)
def metrics_endpoint(request: Request, _who: Scraper) -> Response:
    """Prometheus text exposition (roles monitor and oversight)."""
    svc = get_service(request)
    try:
        with svc.read_session() as session:
            size = read_head(session).tree_size
            metrics.AUDIT_TREE_SIZE.set(size)
            TRUST_CHANGE_GAUGE.refresh(session, size)
            stays_in_force(session, datetime.now(UTC))  # taxaddr_orders_in_force, now
    except (TaxaddrError, SQLAlchemyError):
        # A broken database must not hide the metrics that report it (append
        # failures, policy errors): serve them with the last known tree size.
        pass
    else:
        verification_monitor(request).refresh_in_background()
    return Response(exposition.exposition(), media_type=exposition.MEDIA_TYPE)


def period(from_: str | None, to: str | None, *, required: bool) -> tuple[Any, Any]:
    """The ``from``..``to`` query period (UTC days); the dashboard's default when optional."""
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
    from_day, to_day = period(from_, to, required=True)
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
    from_day, to_day = period(from_ or None, to or None, required=False)
    svc = get_service(request)
    with write_transaction(svc.engine) as session:
        note = latest_checkpoint(session, svc.keystore, svc.settings)
    signed = open_checkpoint(note, audit_verifier(svc.keystore, svc.settings))
    checkpoint = CheckpointView(
        tree_size=signed.tree_size,
        root_hash=signed.root_hash.hex(),
        note=note,
        verification=verification_monitor(request).current(signed.tree_size),
    )
    with svc.read_session() as session:
        view = build_view(session, from_day, to_day, checkpoint=checkpoint)
    return HTMLResponse(render_html(view))
