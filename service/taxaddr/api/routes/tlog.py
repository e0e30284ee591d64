"""C2SP tlog-tiles read API for oversight (``/v1/audit/tlog/...``): the checkpoint (with
its cosignatures), hash tiles and entry bundles, with the spec's caching advice."""

from __future__ import annotations

import gzip
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from taxaddr.api.deps import Oversight, get_service
from taxaddr.audit import tiles
from taxaddr.audit.service import latest_checkpoint
from taxaddr.audit.witnessing import cosigned_note

router = APIRouter(prefix="/v1/audit/tlog", tags=["audit"])
# Immutable, but answered only to an authenticated oversight identity: no shared cache
# (a TLS-terminating proxy) may keep it for others.
IMMUTABLE = "private, max-age=31536000, immutable"
OCTETS = "application/octet-stream"
GZIP_MIN_BYTES = 1024
# The spec's paths as patterns (the route's parser checks the same): N as x-prefixed
# 3-digit elements without a superfluous leading x000, W in 1..255, L in 0..63.
_N = r"(x(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})/(x[0-9]{3}/)*)?[0-9]{3}"
_W = r"(\.p/([1-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?"
Rest = Annotated[str, Path(pattern=f"^{_N}{_W}$", description="<N>[.p/<W>] (C2SP tlog-tiles)")]
Level = Annotated[str, Path(pattern=r"^([0-9]|[1-5][0-9]|6[0-3])$", description="0..63")]
_NOT_YET: dict[int | str, dict[str, object]] = {
    404: {"description": "not_found: the tree has not grown over that tile yet"}
}


@router.get("/checkpoint")
def tlog_checkpoint(request: Request, _who: Oversight) -> Response:
    """The latest checkpoint with every cosignature (mutable: cached a few seconds only)."""
    svc = get_service(request)
    with svc.write() as session:
        note = cosigned_note(session, latest_checkpoint(session, svc.keystore, svc.settings))
    return Response(
        note,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "max-age=5, must-revalidate"},
    )


@router.get("/tile/entries/{rest:path}", responses=_NOT_YET)
def tlog_entries(request: Request, _who: Oversight, rest: Rest) -> Response:
    """An entry bundle: uint16-length-prefixed canonical leaf JSON (immutable)."""
    index, width = tiles.parse_index(rest)
    with get_service(request).read_session() as session:
        data = tiles.entry_bundle(session, index, width)
    # The spec: bundles SHOULD be compressed at the HTTP layer (gzip when accepted).
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    if len(data) >= GZIP_MIN_BYTES and _accepts_gzip(request.headers.get("accept-encoding", "")):
        data = gzip.compress(data, compresslevel=5, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return Response(data, media_type=OCTETS, headers=headers)


def _accepts_gzip(header: str) -> bool:
    """``gzip`` listed in Accept-Encoding without ``q=0``."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "").lower() not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


@router.get("/tile/{level}/{rest:path}", responses=_NOT_YET)
def tlog_tile(request: Request, _who: Oversight, level: Level, rest: Rest) -> Response:
    """A Merkle tree tile: up to 256 hashes of tree level 8 * L (immutable)."""
    tile_level = tiles.parse_level(level)
    index, width = tiles.parse_index(rest)
    with get_service(request).read_session() as session:
        data = tiles.hash_tile(session, tile_level, index, width)
    return Response(data, media_type=OCTETS, headers={"Cache-Control": IMMUTABLE})
