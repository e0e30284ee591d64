"""Health and discovery: ``/healthz``, ``/readyz``, ``/v1/keys`` and ``/openapi.json``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from taxaddr.api.deps import CurrentRequester, get_service
from taxaddr.api.readiness import readiness
from taxaddr.api.schemas import ERRORS
from taxaddr.disclosure.published import public_keys

router = APIRouter()


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


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers (any certificate that passed the handshake)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: ERRORS[503]})
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
