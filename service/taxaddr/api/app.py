"""The FastAPI application: every route module registered here, explicitly.

Routes are thin (:mod:`taxaddr.api.routes`); a disclosure is decided in
:mod:`taxaddr.disclosure.core`.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from taxaddr.api import handlers, openapi
from taxaddr.api.middleware import EdgeMiddleware
from taxaddr.api.routes import (
    accounting,
    admin,
    audit,
    disclosures,
    health,
    orders,
    oversight,
    reports,
    tlog,
)
from taxaddr.api.runtime import engine_for, keystore_for
from taxaddr.api.workers import RATE_LIMIT_FILE, state_dir
from taxaddr.audit.witnessing import (
    WitnessClient,
    WitnessLoop,
    current_size,
    parse_witnesses,
    witness_round,
)
from taxaddr.config import Settings, get_settings
from taxaddr.db import background_checkpoints
from taxaddr.disclosure import address
from taxaddr.disclosure.core import DisclosureService, statute_allow_list
from taxaddr.disclosure.ratelimit import (
    DatabaseRateLimiter,
    Limiter,
    RateLimiter,
    SharedRateLimiter,
)
from taxaddr.oversight.verification import VerificationMonitor, verify_now


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application."""
    settings = settings or get_settings()
    svc = DisclosureService(
        settings=settings,
        engine=engine_for(settings),
        keystore=keystore_for(settings),
        limiter=rate_limiter(settings, engine_for(settings)),
    )
    app = FastAPI(
        title="taxaddr",
        version="1",
        summary="Per-record taxpayer address disclosure under 26 U.S.C. § 6103(i)(2), over mTLS",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.svc = svc
    # The bounded statute label set of the disclosure metrics (policy data's designated
    # statutes), and the one log-verification monitor of this app (its result is cached).
    app.state.statute_labels = statute_allow_list(settings.policy_dir)
    app.state.verification_monitor = VerificationMonitor(
        lambda: verify_now(svc.engine, svc.keystore, svc.settings)
    )
    background_checkpoints(svc.engine)  # SQLite: WAL checkpoints off the request path
    start_witnessing(svc)
    address.warm()  # the USPS ZIP tables, before the first request needs them
    handlers.install(app)
    openapi.install(app)
    for module in (health, disclosures, audit, oversight, reports, admin, orders, tlog, accounting):
        app.include_router(module.router)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def rate_limiter(settings: Settings, engine: Engine | None = None) -> Limiter:
    """The buckets every replica shares (PostgreSQL), else those all workers of this
    server share (a file), else per-process buckets."""
    if engine is not None and engine.dialect.name == "postgresql":
        return DatabaseRateLimiter(settings.rate_limit, engine)
    state = state_dir()
    if state is None:
        return RateLimiter(settings.rate_limit)
    return SharedRateLimiter(settings.rate_limit, state / RATE_LIMIT_FILE)


def start_witnessing(svc: DisclosureService) -> WitnessLoop | None:
    """With TAXADDR_WITNESSES, send grown checkpoints to the witnesses in the background
    (each server process; a witness answers a second submission of one size with 409)."""
    endpoints = parse_witnesses(svc.settings.witnesses)
    if not endpoints:
        return None
    client = WitnessClient(endpoints)
    loop = WitnessLoop(
        lambda: witness_round(svc.write, svc.read_session, svc.keystore, svc.settings, client),
        lambda: current_size(svc.read_session),
        svc.settings.checkpoint_interval,
    )
    loop.start()
    return loop
