"""The one place errors become the contract's envelope.

``{"error": {"code", "message", "request_id"}}`` for every refusal: TaxaddrError
subclasses, schema errors (422 request_invalid), unknown routes and methods,
and database outages (503 database_unavailable). Messages never echo input.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from taxaddr.api.deps import get_trace
from taxaddr.api.disclosure import describe_validation
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
    return error_response(exc.status, code, exc.message, _request_id(request), headers)


def validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    get_trace(request).code = "request_invalid"
    return error_response(422, "request_invalid", describe_validation(errors), _request_id(request))


def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = _HTTP_CODES.get(status, "http_error")
    get_trace(request).code = code
    return error_response(status, code, code.replace("_", " "), _request_id(request))


def database_error(request: Request, exc: Exception) -> Response:
    del exc  # driver messages can echo parameters: never shown or logged
    err = DatabaseUnavailable("database unavailable")
    get_trace(request).code = err.code
    return error_response(err.status, err.code, err.message, _request_id(request))


def install(app: FastAPI) -> None:
    app.add_exception_handler(TaxaddrError, taxaddr_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_error)
    app.add_exception_handler(InterfaceError, database_error)
