"""Audit leaves: the contract's leaf object as RFC 8785 canonical JSON.

A leaf records one decision and nothing that identifies a taxpayer: the subject
is the keyed pseudonym ``subject_ref`` and the case number only appears as its
SHA-256 (``case_number_hash``). The disclosure path puts nothing client-chosen
into a leaf unless it is provably not personal data (``request_id`` a canonical
UUID, ``statute`` one of the policy data's known statutes or ``other``).
:func:`build_leaf` then refuses, as a last line of defence:

* any text field holding a TIN-shaped number in any separator style: nine digits
  joined by anything that is not a letter or digit (``912.77.3456``,
  ``912:77:3456``, ``9-1-2-7-7-3-4-5-6``, ...), except inside a canonical UUID or
  the policy version's digest, which hold such runs by chance;
* any field a client or issuer chose (``request_id``, ``case_jti``, ``statute``)
  that holds the request's or the matched record's TIN (even inside a UUID), or
  one of their name or street words (:class:`PersonalData`).

The registered identity (``requester_id``, ``agency``, ``role``) and the policy
version are the server's own values: only the TIN shape is checked on them (the
registration refuses TIN-shaped ids), so a client cannot make its own leaves
fail by naming a subject after its agency. The service's own ids
(:func:`new_server_id`) cannot look like a TIN. Every error names the field,
never its value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

from taxaddr.errors import AuditUnavailable

ADMIN_OUTCOME = "admin"  # a trust change (taxaddr.audit.admin), not a request's decision
ACCOUNTING_OUTCOME = "accounting"  # a taxpayer-accounting lookup (taxaddr.reports.accounting)
OUTCOMES = ("disclosed", "denied", "no_match", "error", ADMIN_OUTCOME, ACCOUNTING_OUTCOME)
# Leaves that record something other than a disclosure request (not counted as requests).
NOT_REQUESTS = (ADMIN_OUTCOME, ACCOUNTING_OUTCOME)
LEAF_FIELDS = (
    "index",
    "time",
    "request_id",
    "requester_id",
    "agency",
    "role",
    "case_jti",
    "case_number_hash",
    "statute",
    "outcome",
    "reason_codes",
    "subject_ref",
    "policy_version",
)
# A trust change's leaf (outcome "admin") carries one more key: what changed.
ADMIN_FIELDS = (*LEAF_FIELDS, "target")
MAX_FIELD_CHARS = 256

# Anything that is neither a letter nor a digit separates the digits of a TIN as well as
# a dash does ("912.77.3456", "912:77:3456", "9-1-2-7-7-3-4-5-6"); letters break a run.
_SEPARATORS = re.compile(r"[\W_]+")
_NINE_DIGITS = re.compile(r"(?<!\d)\d{9}(?!\d)")
# A content hash such as the policy version "sha256:<64 hex>" is high-entropy
# hex, which holds a run of nine digits by chance in about one hash in four.
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGEST = re.compile(r"(?:[a-z0-9-]{1,16}:)?[0-9a-f]{32,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f]")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
# The shape of a statute key of the policy data ("8 U.S.C. 1253(a)(1)", "18 U.S.C. 1028"):
# what a leaf's statute may be besides OTHER_STATUTE (tests/audit check every key fits).
STATUTE_CITATION = re.compile(
    r"[0-9]{1,2} U\.S\.C\. [0-9]{1,5}[a-z]{0,2}(?:\([0-9A-Za-z]{1,4}\)){0,4}"
)
OTHER_STATUTE = "other"
# Fields whose value a client or an issuer chose: checked against the request's personal data.
CHOSEN_FIELDS = ("request_id", "case_jti", "statute")
# Street words shared by countless addresses: no evidence of whose address a field holds.
_STREET_WORDS = """
    STREET AVENUE AVE ROAD BOULEVARD BLVD DRIVE LANE COURT PLACE WAY APT UNIT SUITE STE
    NORTH SOUTH EAST WEST BOX HWY HIGHWAY ROUTE TERRACE CIRCLE PARKWAY PKWY SQUARE FLOOR
    THE AND RURAL GENERAL DELIVERY
"""
_COMMON_WORDS = frozenset(_STREET_WORDS.split())


class LeafRefused(AuditUnavailable):
    """A leaf field is malformed or looks like personal data; nothing is appended."""


def _digits_joined(value: str) -> str:
    """``value`` with separators removed and every decimal digit made ASCII, so a TIN in
    any separator style reads as nine consecutive digits (letters still break runs)."""
    joined = _SEPARATORS.sub("", value)
    if not joined.isascii():
        joined = "".join(
            str(unicodedata.decimal(ch)) if ch.isdecimal() else ch
            for ch in unicodedata.normalize("NFKC", joined)
        )
    return joined


def tin_shaped(value: str) -> bool:
    """Whether ``value`` holds exactly nine digits joined only by separators."""
    return _NINE_DIGITS.search(_digits_joined(value)) is not None


def _words(value: str) -> list[str]:
    return [w for w in _SEPARATORS.split(unicodedata.normalize("NFKC", value).upper()) if w]


@dataclass(frozen=True)
class PersonalData:
    """What one request's leaf must not hold: TINs and the name and street words of the
    request's subject and of the matched record (never stored; used for the check only)."""

    tins: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()  # whole names, letters only (``JANEQDOE``)

    @classmethod
    def of(
        cls, *, tins: Iterable[str] = (), names: Iterable[str] = (), streets: Iterable[str] = ()
    ) -> PersonalData:
        digits = {d for d in (_digits_joined(t) for t in tins) if len(d) == 9 and d.isdigit()}
        words: set[str] = set()
        whole: set[str] = set()
        for text in (*names, *streets):
            # A word of three or more characters with a letter in it: house numbers and
            # single initials are no evidence of whose address this is.
            words.update(
                w
                for w in _words(text)
                if len(w) >= 3 and not w.isdigit() and w not in _COMMON_WORDS
            )
        for name in names:
            letters = "".join(ch for w in _words(name) for ch in w if ch.isalpha())
            if len(letters) >= 6:
                whole.add(letters)
        return cls(frozenset(digits), frozenset(words), frozenset(whole))

    def __or__(self, other: PersonalData) -> PersonalData:
        return PersonalData(
            self.tins | other.tins, self.words | other.words, self.names | other.names
        )

    def found_in(self, value: str) -> bool:
        """Whether ``value`` holds one of the TINs (any separators, even inside a UUID),
        one of the words, or a whole name written without spaces."""
        if self.tins:
            joined = _digits_joined(value)
            if any(tin in joined for tin in self.tins):
                return True
        if not (self.words or self.names):
            return False
        words = _words(value)
        if self.words.intersection(words):
            return True
        if self.names:
            letters = "".join(ch for w in words for ch in w if ch.isalpha())
            return any(name in letters for name in self.names)
        return False


def screen_chosen(value: str, personal: PersonalData | None) -> bool:
    """Whether a client- or issuer-chosen leaf value passes the guard (what
    :func:`build_leaf` checks on ``request_id`` and ``case_jti``), so the disclosure
    path can refuse such a value before anything is decided."""
    if not CANONICAL_UUID.fullmatch(value) and tin_shaped(value):
        return False
    return personal is None or not personal.found_in(value)


def new_server_id() -> str:
    """A random canonical UUID (version 4) that cannot look like a TIN.

    The service's own ids (request ids of refusals, disclosure ids) must pass the leaf
    guard with certainty: a ``uuid4().hex`` holds nine digits in a row about one time in
    sixteen. Here hex digits 7, 15, 23 and 31 are letters (``a``-``f``), so no run of
    digits, joined across the dashes or not, is longer than seven. 116 random bits.
    """
    return server_id_from(secrets.token_bytes(16))


def server_id_from(random16: bytes) -> str:
    """:func:`new_server_id` for given random bytes (16 of them)."""
    if len(random16) != 16:
        raise ValueError("a server id is made of 16 random bytes")
    raw = bytearray(random16)
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    for position in (7, 15, 23, 31):  # low nibble of bytes 3, 7, 11 and 15
        byte = position // 2
        raw[byte] = (raw[byte] & 0xF0) | (10 + (raw[byte] & 0x0F) % 6)
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class LeafInput:
    """What the caller knows about one decision (the leaf minus ``index`` and ``time``).

    ``case_jti``, ``case_number_hash``, ``subject_ref`` and ``statute`` are None
    when the request was refused before they were known (e.g. an unreadable case
    reference); they are then JSON ``null`` in the leaf.
    """

    request_id: str
    requester_id: str
    agency: str
    role: str
    case_jti: str | None
    case_number_hash: str | None
    statute: str | None
    outcome: str
    reason_codes: tuple[str, ...]
    subject_ref: str | None
    policy_version: str
    time: datetime | None = field(default=None)
    # What a trust change changed (outcome "admin" only; see taxaddr.audit.admin).
    target: str | None = field(default=None)
    # The request's personal data, to check the chosen fields against (not in the leaf).
    personal: PersonalData | None = field(default=None, repr=False, compare=False)


def case_number_hash(number: str) -> str:
    """SHA-256 (hex) of a case number as the case reference carries it."""
    return hashlib.sha256(number.encode("utf-8")).hexdigest()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. ``2026-11-25T16:00:00.123456Z``."""
    if moment.tzinfo is None:
        raise LeafRefused("audit leaf refused: time has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def build_leaf(index: int, leaf: LeafInput) -> dict[str, Any]:
    """The contract's leaf object for position ``index``; raises :class:`LeafRefused`."""
    moment = leaf.time if leaf.time is not None else datetime.now(UTC)
    obj: dict[str, Any] = {
        "index": index,
        "time": format_time(moment),
        "request_id": leaf.request_id,
        "requester_id": leaf.requester_id,
        "agency": leaf.agency,
        "role": leaf.role,
        "case_jti": leaf.case_jti,
        "case_number_hash": leaf.case_number_hash,
        "statute": leaf.statute,
        "outcome": leaf.outcome,
        "reason_codes": list(leaf.reason_codes),
        "subject_ref": leaf.subject_ref,
        "policy_version": leaf.policy_version,
    }
    if leaf.outcome == ADMIN_OUTCOME or leaf.target is not None:
        obj["target"] = leaf.target
    validate_leaf(obj, leaf.personal)
    return obj


def validate_leaf(obj: dict[str, Any], personal: PersonalData | None = None) -> None:
    """Check types and shapes; refuse anything that looks like a TIN or holds ``personal``."""
    admin = obj.get("outcome") == ADMIN_OUTCOME
    if tuple(sorted(obj)) != tuple(sorted(ADMIN_FIELDS if admin else LEAF_FIELDS)):
        raise LeafRefused("audit leaf refused: unexpected or missing fields")
    index = obj["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise LeafRefused("audit leaf refused: index")
    if obj["outcome"] not in OUTCOMES:
        raise LeafRefused("audit leaf refused: outcome")
    if admin:
        _check_admin(obj)
    for name in ("subject_ref", "case_number_hash"):
        value = obj[name]
        if admin and name == "subject_ref" and value == "":
            continue
        if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
            raise LeafRefused(f"audit leaf refused: {name} is not a 64-digit lowercase hex hash")
    codes = obj["reason_codes"]
    if not isinstance(codes, list) or not all(
        isinstance(c, str) and _CODE.fullmatch(c) for c in codes
    ):
        raise LeafRefused("audit leaf refused: reason_codes")
    for name in ("request_id", "requester_id", "agency", "role", "policy_version"):
        _check_text(name, obj[name], nullable=False)
    for name in ("case_jti", "statute"):
        _check_text(name, obj[name], nullable=True)
    if not CANONICAL_UUID.fullmatch(obj["request_id"]):
        raise LeafRefused("audit leaf refused: request_id is not a canonical lowercase UUID")
    statute = obj["statute"]
    cited = statute is None or statute == OTHER_STATUTE or STATUTE_CITATION.fullmatch(statute)
    if not cited and not (admin and statute == ""):
        raise LeafRefused("audit leaf refused: statute is not a statute citation")
    if personal is not None:
        for name in CHOSEN_FIELDS:
            value = obj[name]
            if value is not None and value != OTHER_STATUTE and personal.found_in(value):
                raise LeafRefused(f"audit leaf refused: {name} holds the subject's personal data")


# Digests a trust change's target names keys and certificates by: an RFC 7638 JWK
# thumbprint (base64url of SHA-256) and a certificate's SHA-256 fingerprint (hex). Like
# the policy version's digest they hold digit runs by chance, so the TIN check skips them.
_TARGET_DIGESTS = re.compile(r"(?:jkt=[A-Za-z0-9_-]{43}|sha256[=:][0-9a-f]{64})(?![\w-])")


def _check_admin(obj: dict[str, Any]) -> None:
    """A trust change's leaf: one action code, a target, no taxpayer fields."""
    if len(obj["reason_codes"]) != 1:
        raise LeafRefused("audit leaf refused: an admin leaf names exactly one action")
    if obj["statute"] != "" or obj["subject_ref"] != "":
        raise LeafRefused("audit leaf refused: an admin leaf has empty statute and subject_ref")
    target = obj["target"]
    if not isinstance(target, str) or not target:
        raise LeafRefused("audit leaf refused: target")
    _check_text("target", _TARGET_DIGESTS.sub("", target), nullable=False)
    if len(target) > MAX_FIELD_CHARS:
        raise LeafRefused("audit leaf refused: target")


def _check_text(name: str, value: object, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise LeafRefused(f"audit leaf refused: {name}")
    if _CONTROL.search(value):
        raise LeafRefused(f"audit leaf refused: {name} holds control characters")
    # A UUID's 12-digit group, or the policy version's hex digest, can hold 9 digits
    # by chance. Only the service-computed policy version gets the digest exemption:
    # the other text fields are chosen by clients, issuers or operators.
    if _UUID.fullmatch(value) or (name == "policy_version" and _DIGEST.fullmatch(value)):
        return
    if tin_shaped(value):
        raise LeafRefused(f"audit leaf refused: {name} looks like a TIN")


@functools.lru_cache(maxsize=4096)  # a log holds few distinct statutes; reports ask per leaf
def display_statute(value: str | None) -> str | None:
    """A leaf's statute as oversight views and reports show it: a citation, ``other``
    or None. Leaves written before statutes were restricted may hold free text; it is
    shown (and recounted) as ``other``, so no view renders a field today's guard refuses."""
    if value is None or value == OTHER_STATUTE or STATUTE_CITATION.fullmatch(value):
        return value
    return OTHER_STATUTE


def canonical(obj: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON bytes of a validated leaf (the Merkle tree's entry).

    A validated leaf has ASCII keys and only strings without control characters,
    integers below 2**53, lists of strings and nulls. For exactly those values
    RFC 8785 (JCS) output is the standard library's sorted, compact, non-ASCII-
    preserving encoding, at a tenth of the cost of the pure-Python ``rfc8785``
    serializer on the append path. ``tests/audit/test_leaf.py`` proves the two
    equal over generated leaves; anything else goes through ``rfc8785``.
    """
    if _is_plain_leaf(obj):
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    data: bytes = rfc8785.dumps(obj)
    return data


def _is_plain_leaf(obj: dict[str, Any]) -> bool:
    for key, value in obj.items():
        if not key.isascii():
            return False
        if isinstance(value, list):
            if not all(isinstance(v, str) and _plain_text(v) for v in value):
                return False
        elif isinstance(value, bool) or not (
            value is None
            or (isinstance(value, int) and 0 <= value < 2**53)
            or (isinstance(value, str) and _plain_text(value))
        ):
            return False
    return True


def _plain_text(value: str) -> bool:
    # No control characters (JCS and json escape them alike, but keep the fast path
    # narrow) and no lone surrogates (not encodable as UTF-8).
    return _CONTROL.search(value) is None and not _SURROGATE.search(value)


def index_marker(index: int) -> bytes:
    """Bytes that the canonical leaf at ``index`` must contain (keys sort as
    ``case_number_hash``, ``index``, ``outcome``), used by the fast verifier.

    The marker has an unescaped quote right after a comma, which cannot occur
    inside a JSON string, so it only matches the real ``index`` member.
    """
    return INDEX_MARKER % index


INDEX_MARKER = b',"index":%d,"outcome":"'
