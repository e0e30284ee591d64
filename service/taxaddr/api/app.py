"""The FastAPI application: routes are thin; decisions live in :mod:`taxaddr.disclosure.core`."""

from __future__ import annotations

import importlib
import json
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from taxaddr.api import audit_routes, handlers, openapi
from taxaddr.api.deps import CurrentRequester, client_cert_der, get_service, get_trace
from taxaddr.api.middleware import EdgeMiddleware
from taxaddr.api.ratelimit import Limiter, RateLimiter, SharedRateLimiter
from taxaddr.api.readiness import readiness
from taxaddr.api.runtime import engine_for, keystore_for
from taxaddr.api.schemas import DisclosureAnswer, DisclosureRequest, ErrorEnvelope, inline_schema
from taxaddr.api.workers import RATE_LIMIT_FILE, state_dir
from taxaddr.config import Settings, get_settings
from taxaddr.crypto.published import public_keys
from taxaddr.db import background_checkpoints
from taxaddr.disclosure.core import DisclosureService, disclose, statute_allow_list

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (403, "refused (contract code in the envelope)"),
        (404, "no_unique_match"),
        (409, "request_replayed"),
        (413, "request_too_large"),
        (422, "request_invalid"),
        (429, "rate_limited (Retry-After header)"),
        (503, "policy_unavailable, audit_unavailable, database_unavailable, keys_unavailable"),
    )
}


DISCLOSURE_THREADS = 8


class ReceiptJwk(BaseModel):
    """RFC 7517 / RFC 8037 public JWK of the receipt-signing key."""

    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class PublicKeys(BaseModel):
    """What a third party needs to verify receipts, checkpoints and signed reports."""

    audit_vkey: str
    receipt_jwk: ReceiptJwk
    report_public_key_pem: str


class Readiness(BaseModel):
    """Every dependency usable; ``warnings`` names what dev and test tolerate."""

    status: str
    checks: dict[str, str]
    audit_tree_size: int
    warnings: list[str]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI application."""
    settings = settings or get_settings()
    svc = DisclosureService(
        settings=settings,
        engine=engine_for(settings),
        keystore=keystore_for(settings),
        limiter=rate_limiter(settings),
        statute_labels=statute_allow_list(settings.policy_dir),
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
    background_checkpoints(svc.engine)  # SQLite: WAL checkpoints off the request path
    handlers.install(app)
    openapi.install(app)
    app.include_router(_core_router())
    app.include_router(audit_routes.router)
    _include_oversight(app)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def rate_limiter(settings: Settings) -> Limiter:
    """Per-process token buckets, or the buckets all workers of this server share."""
    state = state_dir()
    if state is None:
        return RateLimiter(settings.rate_limit)
    return SharedRateLimiter(settings.rate_limit, state / RATE_LIMIT_FILE)


def _include_oversight(app: FastAPI) -> None:
    """Mount the oversight router (dashboard, summary, reports, /metrics) when present."""
    try:
        module = importlib.import_module("taxaddr.oversight.routes")
    except ModuleNotFoundError as exc:
        if exc.name != "taxaddr.oversight.routes":
            raise
        return
    router = getattr(module, "router", None)
    if isinstance(router, APIRouter):
        app.include_router(router)


def _core_router() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (any certificate that passed the handshake)."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], responses={503: _ERRORS[503]})
    def readyz(request: Request) -> Readiness:
        """200 only when the database takes a (rolled-back) write, every key loads and no
        secret key file is open to others (prod), and the policy engine and audit log work."""
        return Readiness.model_validate(readiness(get_service(request)))

    @router.get("/v1/keys", tags=["keys"])
    def keys(request: Request, _who: CurrentRequester) -> PublicKeys:
        """The public keys for third-party verification (any registered identity): the
        audit log's C2SP verifier key, the receipt JWK and the report public key (PEM)."""
        svc = get_service(request)
        return PublicKeys.model_validate(public_keys(svc.keystore, svc.settings))

    @router.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request, _who: CurrentRequester) -> JSONResponse:
        """The OpenAPI schema, for registered identities only."""
        return JSONResponse(request.app.openapi())

    @router.post(
        "/v1/disclosures",
        tags=["disclosures"],
        response_model=DisclosureAnswer,
        responses=_ERRORS,
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
        if svc.runs_inline:
            answer = disclose(svc, client_cert_der(request), body, get_trace(request))
        else:
            answer = await anyio.to_thread.run_sync(
                disclose,
                svc,
                client_cert_der(request),
                body,
                get_trace(request),
                limiter=_disclosure_limiter(request),
            )
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")

    return router


def _disclosure_limiter(request: Request) -> CapacityLimiter:
    """Disclosure threads: CPU-bound work gains nothing from more threads than this, and
    the bound keeps pooled database connections (SQLite pool: 15) from running out."""
    limiter: CapacityLimiter | None = getattr(request.app.state, "disclosure_limiter", None)
    if limiter is None:
        limiter = CapacityLimiter(DISCLOSURE_THREADS)
        request.app.state.disclosure_limiter = limiter
    return limiter
