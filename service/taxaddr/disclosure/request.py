"""The contract's request body (pydantic, strict) and how a body becomes one.

Parts of ``last_known_address`` are optional strings on purpose: a missing or
empty part is the policy's ``address_incomplete`` (403), not a schema error. Their
ZIP and state patterns are therefore published in the OpenAPI document (so that
generated requests look like real ones) but not enforced here.

What may reach the permanent audit log is decided here first: ``request_id`` must
be a UUID in canonical lowercase form (anything else is 422 ``request_invalid``);
``statute`` never enters a leaf as sent (the leaf carries a known statute or
``other``, see :mod:`taxaddr.disclosure.core`).

Both the core (step 3, :func:`parse_request`) and the HTTP edge (FastAPI's own
validation errors, :func:`describe_validation`) use this module; it knows no HTTP.
"""

from __future__ import annotations

import json
import re
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

from taxaddr.audit.leaf import PersonalData
from taxaddr.disclosure.address import address_is_complete
from taxaddr.errors import ImportRowError, RequestInvalid
from taxaddr.store.normalize import normalize_name, normalize_tin

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
        """Present, and an address (:mod:`taxaddr.disclosure.address`): no placeholder,
        a deliverable street, a ZIP of the stated state."""
        street, city, state, zip_code = self.street, self.city, self.state, self.zip
        if street is None or city is None or state is None or zip_code is None:
            return False
        return address_is_complete(street, city, state, zip_code)


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


# -- parsing --------------------------------------------------------------------------


class _DuplicateMember(ValueError):
    pass


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateMember
    return obj


def parse_request(body: bytes) -> DisclosureRequest:
    """The body as a :class:`DisclosureRequest`, or :class:`RequestInvalid` (422)."""
    # Duplicate member names are refused (as in case references): with them, what the
    # client meant and what a parser keeps (the last one) can differ.
    try:
        json.loads(body, object_pairs_hook=_no_duplicate_members)
    except _DuplicateMember:
        raise RequestInvalid("request body invalid: duplicate JSON member name") from None
    except (ValueError, RecursionError):
        pass  # not JSON: the schema's parser below names the problem
    try:
        return DisclosureRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestInvalid(describe_validation(exc.errors(include_input=False))) from None


# What each schema error says, by pydantic error type: fixed texts, so no message ever
# echoes a client's value, and a location names only fields of the schema.
_PROBLEMS = {
    "missing": "field required",
    "extra_forbidden": "unknown member",
    "json_invalid": "not valid JSON",
    "json_type": "not a JSON object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "string_too_short": "too short",
    "string_too_long": "too long",
    "too_short": "too few items",
    "too_long": "too many items",
    "string_pattern_mismatch": "does not have the required form",
    "value_error": "not acceptable",
}
_FIELD_NAME = re.compile(r"[a-z][a-z_]{0,39}")


def describe_validation(errors: Any) -> str:
    """First schema error as ``location: problem``, from fixed texts only.

    Never the offending value, and never a member name the client chose: the location
    stops at the object that holds an unknown member, and only names that look like
    the schema's own fields (lowercase words) or list positions are shown.
    """
    for err in errors:
        kind = str(err.get("type", ""))
        loc = [part for part in err.get("loc", ()) if part != "body"]
        if kind == "extra_forbidden" and loc:
            loc = loc[:-1]  # the unknown member's name is the client's
        shown: list[str] = []
        for part in loc:
            if isinstance(part, int) and not isinstance(part, bool):
                shown.append(str(part))
            elif isinstance(part, str) and _FIELD_NAME.fullmatch(part):
                shown.append(part)
            else:
                break
        problem = _PROBLEMS.get(kind, "invalid value")
        where = ".".join(shown)
        return (
            f"request body invalid at {where}: {problem}"
            if where
            else (f"request body invalid: {problem}")
        )
    return "request body invalid"


def normalize_subject(req: DisclosureRequest) -> tuple[str, str]:
    """The subject's TIN and name as the store keys them, or :class:`RequestInvalid`."""
    try:
        tin = normalize_tin(req.subject.tin)
    except ImportRowError:
        raise RequestInvalid("request body invalid at subject.tin: not an SSN or ITIN") from None
    try:
        name = normalize_name(req.subject.name)
    except ImportRowError as exc:
        raise RequestInvalid(f"request body invalid at subject.name: {exc.problem}") from None
    return tin, name


def personal_data(req: DisclosureRequest, tin: str, name: str) -> PersonalData:
    """The request's TIN, name and stated street: what its leaf must not hold."""
    lka = req.subject.last_known_address
    street = lka.street if lka is not None and lka.street else ""
    return PersonalData.of(tins=[tin], names=[name, req.subject.name], streets=[street])
