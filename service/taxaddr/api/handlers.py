"""The one place errors become the contract's envelope.

``{"error": {"code", "message", "request_id"}}`` for every refusal: TaxaddrError
subclasses, schema errors (422 request_invalid), unknown routes and methods (405
with ``Allow``, RFC 9110), and database failures (503 database_unavailable: down,
read-only, corrupt or truncated). Messages never echo input, and a 5xx message is
fixed text for its code: the exception's own message may name server files (a key
path, the policy directory), which only the operator's CLI and logs may show.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from taxaddr.api.deps import get_trace
from taxaddr.disclosure.request import describe_validation
from taxaddr.errors import DatabaseUnavailable, RateLimited, TaxaddrError

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def envelope_bytes(code: str, message: str, request_id: str) -> bytes:
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return json.dumps(body, separators=(",", ":")).encode()


def error_response(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        envelope_bytes(code, message, request_id),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _request_id(request: Request) -> str:
    trace = get_trace(request)
    return trace.client_request_id or trace.request_id


def taxaddr_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, TaxaddrError):  # pragma: no cover - registered for TaxaddrError only
        raise exc
    code = str(getattr(exc, "first_code", exc.code))
    trace = get_trace(request)
    trace.code = code
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    message = exc.message if exc.status < 500 else public_message(code)
    return error_response(exc.status, code, message, _request_id(request), headers)


def public_message(code: str) -> str:
    """The message of a 5xx answer: its code in words, nothing about the server."""
    return code.replace("_", " ")


def validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    get_trace(request).code = "request_invalid"
    return error_response(422, "request_invalid", describe_validation(errors), _request_id(request))


def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = _HTTP_CODES.get(status, "http_error")
    get_trace(request).code = code
    headers = {"Allow": allowed_methods(request)} if status == 405 else None
    return error_response(status, code, code.replace("_", " "), _request_id(request), headers)


def allowed_methods(request: Request) -> str:
    """The ``Allow`` value of a 405 (RFC 9110): every method a route of this path accepts
    (the router's own 405 names only the first route whose path matched)."""
    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.router.routes):
        match, _ = context.matches(scope)
        if match is not Match.NONE:
            methods |= set(context.methods or ())
    return ", ".join(sorted(methods))


# Driver errors that are this program's mistakes, not the database's state: they stay
# 500 internal_error (the edge middleware's last resort) so that they are noticed.
_PROGRAM_ERRORS = (IntegrityError, ProgrammingError, DataError)


def database_error(request: Request, exc: Exception) -> Response:
    """503 database_unavailable for a database that is down, read-only, locked, corrupt
    or truncated. Driver messages can echo parameters: never shown or logged."""
    if isinstance(exc, _PROGRAM_ERRORS):
        raise exc
    err = DatabaseUnavailable()
    get_trace(request).code = err.code
    return error_response(err.status, err.code, public_message(err.code), _request_id(request))


def install(app: FastAPI) -> None:
    app.add_exception_handler(TaxaddrError, taxaddr_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DBAPIError, database_error)
