"""The OpenAPI document, completed so that it tells the truth about every operation.

FastAPI documents what a route declares: its parameters as typed in Python, a
success answer and a 422 in its own validation-error shape. The service answers
more than that, and in one envelope, so :func:`complete_openapi` adds, per
operation, every status it can return (derived from the route, not listed by hand):

* every operation: 413 (body limit, any method), 429 (connections per client
  certificate, answered at the edge), 431 (header limits, answered at the edge);
* an operation that identifies its caller (depends on ``current_requester``): 403
  (``requester_unknown``, ``requester_revoked``, ``role_forbidden``) and 503 (the
  identity lookup needs the database);
* an operation with parameters or a body: 422 ``request_invalid``, in the envelope
  (FastAPI's own 422 schema is replaced: the service never answers it);
* the mTLS security scheme (OpenAPI 3.1 ``mutualTLS``) for the whole API.

Query parameters whose rules the route cannot state in its Python signature (a day
that must be a date, a period's ``from`` and ``to`` that are required, an
enumerated ``format``) are stated in :data:`QUERY_PARAMETERS`, and success answers
that are not JSON in :data:`SUCCESS_CONTENT`; tests check them against the running
server (schemathesis with every check, and named tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from taxaddr.api.deps import current_requester
from taxaddr.api.schemas import ErrorEnvelope
from taxaddr.audit.summary import MAX_PERIOD_DAYS

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"

ERROR_DESCRIPTIONS: dict[int, str] = {
    403: "refused: requester_unknown, requester_revoked, role_forbidden "
    "(and, for disclosures, the contract's denial codes)",
    404: "not found (no_unique_match for disclosures; not_found for reads)",
    409: "request_replayed",
    413: "request_too_large (body over the limit, any method)",
    422: "request_invalid (a parameter or the body breaks the rules documented here)",
    429: "rate_limited (Retry-After header, seconds)",
    431: "request_header_too_large (answered before any body is read)",
    503: "database_unavailable, keys_unavailable, policy_unavailable or audit_unavailable",
}
EVERY_OPERATION = (413, 429, 431)
IDENTIFIED = (403, 503)

_DATE = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_PERIOD_NOTE = "a UTC day, YYYY-MM-DD; both ends inclusive; `from` <= `to`, at most {days} days"


def _day(*, required: bool, what: str) -> dict[str, Any]:
    return {
        "required": required,
        "schema": dict(_DATE),
        "description": f"{what}: " + _PERIOD_NOTE.format(days=MAX_PERIOD_DAYS + 1),
    }


def _form_day(what: str) -> dict[str, Any]:
    """A day of the dashboard's HTML form, which submits an empty field as empty."""
    day = _day(required=False, what=what)
    day["schema"] = {"anyOf": [dict(_DATE), {"type": "string", "maxLength": 0}]}
    return day


QUERY_PARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/oversight/summary", "from"): _day(required=True, what="first day"),
    ("/v1/oversight/summary", "to"): _day(required=True, what="last day"),
    ("/v1/reports/compliance", "from"): _day(required=True, what="first day"),
    ("/v1/reports/compliance", "to"): _day(required=True, what="last day"),
    ("/v1/reports/compliance", "format"): {
        "required": False,
        "schema": {"type": "string", "enum": ["json", "csv", "pdf"], "default": "json"},
    },
    ("/v1/reports/transparency", "from"): _day(required=True, what="first day"),
    ("/v1/reports/transparency", "to"): _day(required=True, what="last day"),
    ("/v1/reports/transparency", "format"): {
        "required": False,
        "schema": {"type": "string", "enum": ["json", "csv", "pdf"], "default": "json"},
    },
    ("/oversight", "from"): _form_day("first day (with `to`; both empty: the last 30 days)"),
    ("/oversight", "to"): _form_day("last day (with `from`)"),
}

# What a route's Python signature cannot say about its success answer.
_TEXT = {"schema": {"type": "string"}}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_OCTETS = {"content": {"application/octet-stream": _BINARY}}
SUCCESS_CONTENT: dict[str, dict[str, Any]] = {
    "/metrics": {"content": {"text/plain": _TEXT}},
    "/v1/audit/tlog/checkpoint": {"content": {"text/plain": _TEXT}},
    "/v1/audit/tlog/tile/entries/{rest}": _OCTETS,
    "/v1/audit/tlog/tile/{level}/{rest}": _OCTETS,
    "/v1/reports/transparency": {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/csv": _TEXT,
            "application/pdf": _BINARY,
        },
        "headers": {
            "X-Signature": {
                "description": "Ed25519 signature over the body, standard base64",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
    "/v1/reports/compliance": {
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/csv": _TEXT,
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": {
            "X-Signature": {
                "description": "Ed25519 signature over the body, standard base64 "
                "(verify with report_public_key_pem of GET /v1/keys)",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
}


def install(app: FastAPI) -> None:
    """Serve the completed document as ``app.openapi()`` (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorEnvelope"] = envelope
    for name in ("ErrorEnvelope", "ErrorBody"):  # exactly these keys, never more
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {
        "mTLS": {
            "type": "mutualTLS",
            "description": "a client certificate from the service's client CA; the role "
            "comes from the registered identity of that certificate",
        }
    }
    doc["security"] = [{"mTLS": []}]
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path = context.path_format or route.path_format
        for method in context.methods or ():
            operation = doc["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _complete_operation(route, path, operation)
    return doc


def _complete_operation(route: APIRoute, path: str, operation: dict[str, Any]) -> None:
    statuses = set(EVERY_OPERATION)
    if _identifies(route.dependant):
        statuses.update(IDENTIFIED)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if path in SUCCESS_CONTENT:
        responses.setdefault("200", {"description": "Successful Response"})
        responses["200"].update(SUCCESS_CONTENT[path])
    for status in sorted(statuses | {int(s) for s in responses if s.isdigit() and int(s) >= 400}):
        responses[str(status)] = _error_response(status, responses.get(str(status)))
    for parameter in operation.get("parameters", ()):
        if parameter.get("in") == "query":
            parameter.update(QUERY_PARAMETERS.get((path, parameter["name"]), {}))


def _error_response(status: int, declared: dict[str, Any] | None) -> dict[str, Any]:
    description = (declared or {}).get("description") or ERROR_DESCRIPTIONS.get(status, "error")
    if declared and "HTTPValidationError" in str(declared):
        description = ERROR_DESCRIPTIONS[status]
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ENVELOPE_REF}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _identifies(dependant: Dependant) -> bool:
    return any(dep.call is current_requester or _identifies(dep) for dep in _children(dependant))


def _children(dependant: Dependant) -> Iterable[Dependant]:
    return dependant.dependencies
