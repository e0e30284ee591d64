"""``POST /v1/disclosures``: the edge of the decision core.

The route reads the body, hands it with the verified client certificate to
:func:`taxaddr.disclosure.core.disclose`, and maps the typed outcome it returns:

==============  ======================  ===============  ===========================
outcome         status                  metrics outcome  leaf (access log, metrics)
==============  ======================  ===============  ===========================
Disclosed       200 and the answer      disclosed        yes
Refused + leaf  403 / 409 (its code)    denied           yes
Refused         403 / 422 / 429         invalid /        no
                                        throttled
NoMatch         404 no_unique_match     no_match         yes
Unavailable     5xx (its code)          error            no
==============  ======================  ===============  ===========================

Refusals are raised as their :class:`~taxaddr.errors.TaxaddrError`, so the one handler
(:mod:`taxaddr.api.handlers`) renders every envelope.
"""

from __future__ import annotations

import json
import time

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, Request
from fastapi.responses import Response

from taxaddr import metrics
from taxaddr.api.deps import client_cert_der, get_service, get_trace
from taxaddr.api.schemas import ERRORS, DisclosureAnswer, inline_schema
from taxaddr.api.trace import Trace, unlogged_outcome
from taxaddr.disclosure.core import DisclosureService, disclose, disclose_async
from taxaddr.disclosure.outcome import Caller, Disclosed, NoMatch, Outcome, Refused
from taxaddr.disclosure.request import DisclosureRequest

DISCLOSURE_THREADS = 8

router = APIRouter(tags=["disclosures"])


@router.post(
    "/v1/disclosures",
    response_model=DisclosureAnswer,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(DisclosureRequest)}},
        }
    },
)
async def post_disclosure(request: Request) -> Response:
    """Request one taxpayer's address for a verified criminal case (role requester)."""
    body = await request.body()
    svc = get_service(request)
    labels: frozenset[str] = request.app.state.statute_labels
    if svc.runs_inline:
        outcome = await decide_async(
            svc, client_cert_der(request), body, get_trace(request), labels
        )
    else:
        outcome = await anyio.to_thread.run_sync(
            decide,
            svc,
            client_cert_der(request),
            body,
            get_trace(request),
            labels,
            limiter=_disclosure_limiter(request),
        )
    if isinstance(outcome, Disclosed):
        return Response(
            json.dumps(outcome.answer, separators=(",", ":")), media_type="application/json"
        )
    raise outcome.error


def decide(
    svc: DisclosureService,
    cert_der: bytes | None,
    body: bytes,
    trace: Trace,
    statute_labels: frozenset[str],
) -> Outcome:
    """Run the core on one request, and record its outcome in ``trace`` and the metrics."""
    started = time.perf_counter()
    caller = Caller(request_id=trace.request_id)
    try:
        outcome = disclose(svc, cert_der, body, caller)
    finally:
        # Who asked, also when a step failed with something other than a refusal.
        _trace_caller(trace, caller)
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
    record(outcome, trace, statute_labels)
    return outcome


async def decide_async(
    svc: DisclosureService,
    cert_der: bytes | None,
    body: bytes,
    trace: Trace,
    statute_labels: frozenset[str],
) -> Outcome:
    """:func:`decide` on the event loop: the write transaction joins a group commit."""
    started = time.perf_counter()
    caller = Caller(request_id=trace.request_id)
    try:
        outcome = await disclose_async(svc, cert_der, body, caller)
    finally:
        _trace_caller(trace, caller)
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
    record(outcome, trace, statute_labels)
    return outcome


def _trace_caller(trace: Trace, caller: Caller) -> None:
    trace.request_id = caller.request_id
    who = caller.requester
    if who is not None:
        trace.requester_id, trace.agency, trace.role = who.id, who.agency, who.role
    if caller.client_request_id is not None:
        trace.client_request_id = caller.client_request_id


def record(outcome: Outcome, trace: Trace, statute_labels: frozenset[str]) -> None:
    """The access log's outcome, code and leaf, and the metrics, of one outcome.

    ``denied`` and ``no_match`` (like ``disclosed``) are counted only for an outcome whose
    leaf committed, so metric totals equal audit-log totals (CONTRACT "Metrics").
    """
    if isinstance(outcome, Disclosed):
        trace.outcome = "disclosed"
        trace.leaf_index = outcome.leaf.index
        who = outcome.caller.requester
        agency = who.agency if who is not None else "unknown"
        statute = metrics.bounded(outcome.statute, statute_labels or {outcome.statute})
        metrics.DISCLOSURES.labels(agency=agency, statute=statute).inc()
    elif isinstance(outcome, NoMatch):
        trace.outcome, trace.code = "no_match", outcome.error.code
        trace.leaf_index = outcome.leaf.index
    elif isinstance(outcome, Refused):
        trace.code = outcome.code
        if outcome.leaf is not None:
            trace.outcome, trace.leaf_index = "denied", outcome.leaf.index
        else:
            trace.outcome = unlogged_outcome(outcome.error.status)
    else:
        trace.code = outcome.code
        trace.outcome = unlogged_outcome(outcome.error.status)
    metrics.DISCLOSURE_REQUESTS.labels(
        agency=trace.agency or "unknown",
        outcome=trace.outcome,
        reason=trace.code or "none",
    ).inc()


def _disclosure_limiter(request: Request) -> CapacityLimiter:
    """Disclosure threads: CPU-bound work gains nothing from more threads than this, and
    the bound keeps pooled database connections (SQLite pool: 15) from running out."""
    limiter: CapacityLimiter | None = getattr(request.app.state, "disclosure_limiter", None)
    if limiter is None:
        limiter = CapacityLimiter(DISCLOSURE_THREADS)
        request.app.state.disclosure_limiter = limiter
    return limiter
