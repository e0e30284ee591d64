"""The contract's request and answer bodies (pydantic), validated strictly.

Parts of ``last_known_address`` are optional strings on purpose: a missing or
empty part is the policy's ``address_incomplete`` (403), not a schema error. Their
ZIP and state patterns are therefore published in the OpenAPI document (so that
generated requests look like real ones) but not enforced here.

What may reach the permanent audit log is decided here first: ``request_id`` must
be a UUID in canonical lowercase form (anything else is 422 ``request_invalid``);
``statute`` never enters a leaf as sent (the leaf carries a known statute or
``other``, see :mod:`taxaddr.disclosure.core`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

REQUEST_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# An SSN or ITIN exactly as the store's normalizer accepts it (taxaddr.store.normalize,
# CONTRACT "Import columns"), spelled without look-arounds so that every JSON Schema
# tool can generate from it: 9 digits, dashes allowed as 123-45-6789; area neither 000,
# 666 nor 9xx (SSN), or 9xx with group 50-65, 70-88, 90-92 or 94-99 (ITIN); group not
# 00; serial not 0000.
_SSN_AREA = "00[1-9]|0[1-9][0-9]|[1-5][0-9]{2}|6[0-5][0-9]|66[0-57-9]|6[7-9][0-9]|[78][0-9]{2}"
_SSN_GROUP = "0[1-9]|[1-9][0-9]"
_ITIN_GROUP = "5[0-9]|6[0-5]|7[0-9]|8[0-8]|9[0-2]|9[4-9]"
_SERIAL = "000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3}"
TIN_PATTERN = (
    f"^(?:(?:{_SSN_AREA})-?(?:{_SSN_GROUP})|9[0-9]{{2}}-?(?:{_ITIN_GROUP}))-?(?:{_SERIAL})$"
)
# Published for names (what the normalizer accepts, in ASCII; letters of other scripts
# are accepted too).
NAME_PATTERN = r"^[A-Za-z .'-]*[A-Za-z][A-Za-z .'-]*$"
STATUTE_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters
ZIP_PATTERN = r"^[0-9]{5}(-[0-9]{4})?$"
STATE_PATTERN = r"^[A-Z]{2}$"

RequestId = Annotated[
    str, StringConstraints(min_length=36, max_length=36, pattern=REQUEST_ID_PATTERN)
]
AddressPart = Annotated[str, StringConstraints(max_length=200)]


def _published(pattern: str, example: str) -> WithJsonSchema:
    """An address part's schema with the pattern a real value has (not enforced here)."""
    return WithJsonSchema(
        {"type": "string", "maxLength": 200, "pattern": pattern, "examples": [example]}
    )


NamePart = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": NAME_PATTERN,
            "examples": ["JANE Q DOE"],
        }
    ),
]
StatePart = Annotated[AddressPart, _published(STATE_PATTERN, "DC")]
ZipPart = Annotated[AddressPart, _published(ZIP_PATTERN, "20001")]
TaxPeriod = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LastKnownAddress(_Strict):
    street: AddressPart | None = None
    city: AddressPart | None = None
    state: StatePart | None = Field(
        default=None,
        description="USPS state code; missing or empty is address_incomplete (403)",
    )
    zip: ZipPart | None = Field(
        default=None, description="ZIP or ZIP+4; missing or empty is address_incomplete (403)"
    )

    def complete(self) -> bool:
        parts = (self.street, self.city, self.state, self.zip)
        return all(p is not None and p.strip() for p in parts)


class Subject(_Strict):
    tin: Annotated[str, StringConstraints(min_length=9, max_length=11, pattern=TIN_PATTERN)] = (
        Field(description="SSN or ITIN", examples=["123-45-6789"])
    )
    name: NamePart = Field(description="letters (any script), spaces, '-', \"'\" and '.'")
    last_known_address: LastKnownAddress | None = None


class DisclosureRequest(_Strict):
    request_id: RequestId = Field(
        description="client-chosen unique id: a UUID in canonical lowercase form",
        examples=["0b6f3a4e-8c1d-4f2a-9e7b-5d3c2a1f0e9d"],
    )
    case_reference: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    subject: Subject
    tax_periods: list[TaxPeriod] = Field(min_length=1, max_length=50)
    statute: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=STATUTE_PATTERN)
    ] = Field(examples=["8 U.S.C. 1253(a)(1)"])
    reason: Annotated[str, StringConstraints(max_length=4000)]

    def address_complete(self) -> bool:
        lka = self.subject.last_known_address
        return lka is not None and lka.complete()


_REQUEST_ID: TypeAdapter[str] = TypeAdapter(RequestId)


def valid_request_id(value: object) -> str | None:
    """``value`` if it is an acceptable request_id (a canonical lowercase UUID), else None."""
    if not isinstance(value, str):
        return None
    try:
        return _REQUEST_ID.validate_python(value)
    except ValidationError:
        return None


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
