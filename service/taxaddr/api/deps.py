"""FastAPI dependencies: the caller's identity and role checks (used by every router)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from taxaddr.api.trace import Trace
from taxaddr.disclosure.core import DisclosureService
from taxaddr.disclosure.identity import Requester, identify
from taxaddr.errors import RoleForbidden

TRACE_KEY = "taxaddr.trace"


def client_cert_der(request: Request) -> bytes | None:
    """The verified client certificate (DER) the server glue put into the ASGI scope."""
    tls: dict[str, Any] = request.scope.get("extensions", {}).get("tls") or {}
    der = tls.get("client_cert_der")
    if isinstance(der, bytes):
        return der
    chain = tls.get("client_cert_chain") or []
    if chain and isinstance(chain[0], str):
        return ssl.PEM_cert_to_DER_cert(chain[0])
    return None


def get_trace(request: Request) -> Trace:
    trace = request.scope.get(TRACE_KEY)
    if not isinstance(trace, Trace):
        trace = Trace(request_id="-")
        request.scope[TRACE_KEY] = trace
    return trace


def get_service(request: Request) -> DisclosureService:
    svc: DisclosureService = request.app.state.svc
    return svc


def current_requester(request: Request) -> Requester:
    """The registered, unrevoked identity of the verified client certificate."""
    trace = get_trace(request)
    svc = get_service(request)
    with svc.read_session() as session:
        requester = identify(session, client_cert_der(request))
    trace.requester_id, trace.agency, trace.role = requester.id, requester.agency, requester.role
    return requester


CurrentRequester = Annotated[Requester, Depends(current_requester)]


def require_role(*roles: str) -> Callable[..., Requester]:
    """A dependency admitting only identities whose registered role is one of ``roles``.

    A role never implies another: ``require_role("oversight")`` refuses admin too.
    """
    allowed = frozenset(roles)

    def dependency(requester: CurrentRequester) -> Requester:
        if requester.role not in allowed:
            raise RoleForbidden(f"this endpoint needs the role {' or '.join(sorted(allowed))}")
        return requester

    return dependency


# The routes of the oversight role (audit log, summary, dashboard, compliance reports).
Oversight = Annotated[Requester, Depends(require_role("oversight"))]
