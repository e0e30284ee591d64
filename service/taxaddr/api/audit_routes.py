"""Audit endpoints for the oversight role: checkpoint, entries, proofs (CONTRACT.md shapes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from taxaddr.api.deps import get_service, require_role
from taxaddr.api.identity import Requester
from taxaddr.audit import service as audit_service

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Oversight = Annotated[Requester, Depends(require_role("oversight"))]
Index = Annotated[int, Query(ge=0, le=2**53)]


@router.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(request: Request, _who: Oversight) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP signed note); signs a new one if the tree grew."""
    svc = get_service(request)
    with svc.write() as session:
        note = audit_service.latest_checkpoint(session, svc.keystore, svc.settings)
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


@router.get("/entries")
def entries(request: Request, _who: Oversight, start: Index, end: Index) -> dict[str, Any]:
    """Leaves ``[start, end)``, at most 1000 per answer."""
    with get_service(request).read_session() as session:
        return {"entries": audit_service.get_entries(session, start, end)}


@router.get("/proof/inclusion")
def inclusion(
    request: Request, _who: Oversight, leaf_index: Index, tree_size: Index
) -> dict[str, Any]:
    """RFC 6962 audit path of ``leaf_index`` in the tree of ``tree_size`` leaves."""
    with get_service(request).read_session() as session:
        return audit_service.inclusion_proof_json(session, leaf_index, tree_size)


@router.get("/proof/consistency")
def consistency(request: Request, _who: Oversight, first: Index, second: Index) -> dict[str, Any]:
    """RFC 6962 consistency proof between two tree sizes."""
    with get_service(request).read_session() as session:
        return audit_service.consistency_proof_json(session, first, second)
