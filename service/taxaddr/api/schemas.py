"""The contract's request and answer bodies (pydantic), validated strictly.

Parts of ``last_known_address`` are optional strings on purpose: a missing or
empty part is the policy's ``address_incomplete`` (403), not a schema error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

# Free-text fields land in the audit leaf (request_id, statute); the audit log
# refuses control characters and anything shaped like a TIN, so refuse it here
# as a schema error (422) instead of failing the append later.
_TIN_LIKE = re.compile(r"(?<![0-9])[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}(?![0-9])")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
AddressPart = Annotated[str, StringConstraints(max_length=200)]
TaxPeriod = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LastKnownAddress(_Strict):
    street: AddressPart | None = None
    city: AddressPart | None = None
    state: AddressPart | None = None
    zip: AddressPart | None = None

    def complete(self) -> bool:
        parts = (self.street, self.city, self.state, self.zip)
        return all(p is not None and p.strip() for p in parts)


class Subject(_Strict):
    tin: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    last_known_address: LastKnownAddress | None = None


class DisclosureRequest(_Strict):
    request_id: RequestId = Field(description="client-chosen unique id (a UUID)")
    case_reference: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    subject: Subject
    tax_periods: list[TaxPeriod] = Field(min_length=1, max_length=50)
    statute: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    reason: Annotated[str, StringConstraints(max_length=4000)]

    @field_validator("request_id")
    @classmethod
    def _request_id_not_tin(cls, value: str) -> str:
        if not _UUID.fullmatch(value) and _TIN_LIKE.search(value):
            raise ValueError("must not look like a TIN (use a UUID)")
        return value

    @field_validator("statute")
    @classmethod
    def _statute_text(cls, value: str) -> str:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError("must not contain control characters")
        if _TIN_LIKE.search(value):
            raise ValueError("is not a statute citation")
        return value

    def address_complete(self) -> bool:
        lka = self.subject.last_known_address
        return lka is not None and lka.complete()


_REQUEST_ID: TypeAdapter[str] = TypeAdapter(RequestId)


def valid_request_id(value: object) -> str | None:
    """``value`` if it is an acceptable request_id, else None."""
    if not isinstance(value, str):
        return None
    try:
        _REQUEST_ID.validate_python(value)
    except ValidationError:
        return None
    if not _UUID.fullmatch(value) and _TIN_LIKE.search(value):
        return None
    return value


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
