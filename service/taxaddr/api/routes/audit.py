"""Audit endpoints for the oversight role: checkpoint, entries, proofs (CONTRACT.md shapes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from taxaddr.api.deps import CurrentRequester, Oversight, get_service
from taxaddr.audit import service as audit_service
from taxaddr.audit.offline import disclosure_proof
from taxaddr.audit.witnessing import cosigned_note
from taxaddr.errors import NotFound, RoleForbidden

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Index = Annotated[int, Query(ge=0, le=2**53)]
Hash = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256, hex")]


class Entry(BaseModel):
    index: int
    leaf: dict[str, Any] = Field(description="the leaf object (its canonical JSON is hashed)")


class Entries(BaseModel):
    entries: list[Entry]


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    hashes: list[Hash] = Field(description="RFC 6962 audit path, leaf to root")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[Hash] = Field(description="RFC 6962 consistency proof")


@router.get("/checkpoint", response_class=PlainTextResponse)
def checkpoint(request: Request, _who: Oversight) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP signed note); signs a new one if the tree grew."""
    svc = get_service(request)
    with svc.write() as session:
        note = audit_service.latest_checkpoint(session, svc.keystore, svc.settings)
        note = cosigned_note(session, note)  # with every witness cosignature collected
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


@router.get(
    "/proof/disclosure/{disclosure_id}",
    responses={
        404: {"description": "not_found: no such disclosure (or not one made to the caller)"},
        503: {"description": "witness_quorum_pending: not yet cosigned by the quorum"},
    },
)
def disclosure_proof_endpoint(
    request: Request,
    who: CurrentRequester,
    disclosure_id: Annotated[str, Path(pattern="^[0-9a-f-]{36}$")],
) -> dict[str, Any]:
    """An offline proof that the disclosure's accounting leaf is in the log: the leaf,
    the checkpoint with its cosignatures and the inclusion path (roles oversight, and
    requester for the disclosures made to it)."""
    if who.role not in {"oversight", "requester"}:
        raise RoleForbidden("this endpoint needs the role oversight or requester")
    svc = get_service(request)
    receiver = None if who.role == "oversight" else who.id
    with svc.write() as session:
        return disclosure_proof(
            session, svc.keystore, svc.settings, disclosure_id, requester_id=receiver
        )


@router.get("/entries", response_model=Entries)
def entries(
    request: Request,
    _who: Oversight,
    start: Annotated[int, Query(ge=0, le=2**53, description="first index; < end")],
    end: Annotated[int, Query(ge=0, le=2**53, description="exclusive; > start")],
) -> dict[str, Any]:
    """Leaves ``[start, end)`` (``start < end``, else 422): at most 1000 per answer, and
    none past the log's end (ask again from the last index + 1)."""
    with get_service(request).read_session() as session:
        return {"entries": audit_service.get_entries(session, start, end)}


_NOT_YET: dict[int | str, dict[str, Any]] = {
    404: {"description": "not_found: the log has fewer leaves than that tree size"}
}


@router.get("/proof/inclusion", response_model=InclusionProof, responses=_NOT_YET)
def inclusion(
    request: Request,
    _who: Oversight,
    leaf_index: Annotated[int, Query(ge=0, le=2**53, description="< tree_size")],
    tree_size: Index,
) -> dict[str, Any]:
    """RFC 6962 audit path of ``leaf_index`` in the tree of ``tree_size`` leaves
    (``leaf_index < tree_size``, else 422; a tree larger than the log: 404)."""
    with get_service(request).read_session() as session:
        if leaf_index < tree_size:
            _tree_exists(session, tree_size)
        return audit_service.inclusion_proof_json(session, leaf_index, tree_size)


@router.get("/proof/consistency", response_model=ConsistencyProof, responses=_NOT_YET)
def consistency(
    request: Request,
    _who: Oversight,
    first: Annotated[int, Query(ge=0, le=2**53, description="<= second")],
    second: Index,
) -> dict[str, Any]:
    """RFC 6962 consistency proof between two tree sizes (``first <= second``, else 422;
    a tree larger than the log: 404)."""
    with get_service(request).read_session() as session:
        if first <= second:
            _tree_exists(session, second)
        return audit_service.consistency_proof_json(session, first, second)


def _tree_exists(session: Session, size: int) -> None:
    """A well-formed question about a tree the log has not grown to is 404, not 422:
    asked again later, it has an answer."""
    current = audit_service.tree_size(session)
    if size > current:
        raise NotFound(f"the log has {current} leaves; no tree of size {size} yet")
