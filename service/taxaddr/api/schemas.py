"""The contract's answer and error bodies (pydantic), for the OpenAPI document.

The request body's model is the decision core's: :mod:`taxaddr.disclosure.request`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class DisclosedAddressOut(BaseModel):
    street: str
    city: str
    state: str
    zip: str
    as_of: str


class AuditRef(BaseModel):
    leaf_index: int
    leaf_hash: str
    tree_size: int


class DisclosureAnswer(BaseModel):
    disclosure_id: str
    case_number: str
    address: DisclosedAddressOut
    use_restriction: str
    audit: AuditRef
    receipt: str


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every ``$ref`` inlined (for ``openapi_extra``)."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


# The error answers of ``POST /v1/disclosures`` (OpenAPI ``responses``).
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (403, "refused (contract code in the envelope)"),
        (404, "no_unique_match"),
        (409, "request_replayed"),
        (413, "request_too_large"),
        (422, "request_invalid"),
        (429, "rate_limited (Retry-After header)"),
        (503, "policy_unavailable, audit_unavailable, database_unavailable, keys_unavailable"),
    )
}
