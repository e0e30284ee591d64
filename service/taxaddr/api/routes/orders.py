"""``POST /v1/orders``: apply a court order (role admin). Thin edge: the admin's
registered identity is the acting identity of the order's leaf;
:mod:`taxaddr.cases.orders` verifies and applies it in one write transaction."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from taxaddr.api.deps import get_service, require_role
from taxaddr.audit.admin import Actor
from taxaddr.cases.orders import apply_order
from taxaddr.disclosure.identity import Requester
from taxaddr.errors import OrderMalformed

router = APIRouter(prefix="/v1", tags=["orders"])
Admin = Annotated[Requester, Depends(require_role("admin"))]

ORDER_BODY = {
    "type": "object",
    "required": ["order"],
    "properties": {"order": {"type": "string", "description": "the court order, compact JWS"}},
}


@router.post(
    "/orders",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": ORDER_BODY}}}
    },
)
async def post_order(request: Request, who: Admin) -> JSONResponse:
    """Verify and apply a court order (stay or lift); 201 with its audit leaf."""
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        raise OrderMalformed("the body is not JSON") from None
    if not isinstance(body, dict) or set(body) != {"order"} or not isinstance(body["order"], str):
        raise OrderMalformed('the body must be {"order": "<compact JWS>"}')
    svc = get_service(request)
    actor = Actor(who.id, who.agency, who.role)

    def apply() -> dict[str, Any]:
        with svc.write() as session:
            return apply_order(session, body["order"], settings=svc.settings, actor=actor).as_dict()

    answer = await anyio.to_thread.run_sync(apply)
    return JSONResponse(answer, status_code=201)
