"""``/v1/admin/changes``: trust changes over the API (role admin), dual control.

Thin edge: the admin's registered identity is the acting identity of every leaf;
:mod:`taxaddr.trust.changes` validates, applies or holds the change for a second admin.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from taxaddr.api.deps import get_service, require_role
from taxaddr.audit.admin import Actor
from taxaddr.disclosure.identity import Requester
from taxaddr.errors import RequestInvalid
from taxaddr.trust.changes import PENDING, TrustChanges

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[Requester, Depends(require_role("admin"))]
ChangeId = Annotated[str, Path(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$")]


def _changes(request: Request) -> TrustChanges:
    svc = get_service(request)
    return TrustChanges(svc.write, svc.settings)


def _actor(who: Requester) -> Actor:
    return Actor(who.id, who.agency, who.role)


CHANGE_BODY = {
    "type": "object",
    "required": ["action"],
    "properties": {
        "action": {"enum": ["issuer_add", "issuer_key_remove", "requester_add"]},
        "issuer": {"type": "string"},
        "jwk": {"type": "object"},
        "kid": {"type": "string"},
        "id": {"type": "string"},
        "agency": {"type": "string"},
        "role": {"type": "string"},
        "certificate": {"type": "string", "description": "PEM"},
    },
}


@router.post(
    "/changes",
    status_code=200,
    responses={
        202: {
            "description": "pending: a second admin must approve (dual control)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": CHANGE_BODY}}}
    },
)
async def post_change(request: Request, who: Admin) -> JSONResponse:
    """Propose a trust change: applied at once (200), or pending under dual control (202)."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise RequestInvalid("the body is not JSON") from None
    result = await anyio.to_thread.run_sync(_changes(request).submit, _actor(who), body)
    return JSONResponse(result.as_dict(), status_code=202 if result.status == PENDING else 200)


@router.get("/changes")
def list_changes(request: Request, _who: Admin) -> dict[str, Any]:
    """Every change proposed under dual control, with its status (pending ones first to act on)."""
    return {"changes": _changes(request).list()}


@router.post("/changes/{change_id}/approve")
def approve_change(request: Request, who: Admin, change_id: ChangeId) -> dict[str, Any]:
    """Approve a pending change proposed by another admin: it takes effect now."""
    return _changes(request).approve(_actor(who), change_id).as_dict()


@router.post("/changes/{change_id}/refuse")
def refuse_change(request: Request, who: Admin, change_id: ChangeId) -> dict[str, Any]:
    """Decline a pending change (the proposer may withdraw it)."""
    return _changes(request).refuse(_actor(who), change_id).as_dict()
