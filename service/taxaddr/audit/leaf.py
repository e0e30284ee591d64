"""Audit leaves: the contract's leaf object as RFC 8785 canonical JSON.

A leaf records one decision and nothing that identifies a taxpayer: the subject
is the keyed pseudonym ``subject_ref`` and the case number only appears as its
SHA-256 (``case_number_hash``). :func:`build_leaf` refuses, as a last line of
defence, any field that looks like a TIN; the error names the field, never its
value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

from taxaddr.errors import AuditUnavailable

OUTCOMES = ("disclosed", "denied", "no_match", "error")
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
MAX_FIELD_CHARS = 256

_TIN_LIKE = re.compile(r"(?<!\d)\d{3}[- ]?\d{2}[- ]?\d{4}(?!\d)")
# A content hash such as the policy version "sha256:<64 hex>" is high-entropy
# hex, which holds a run of nine digits by chance in about one hash in four.
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGEST = re.compile(r"(?:[a-z0-9-]{1,16}:)?[0-9a-f]{32,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f]")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class LeafRefused(AuditUnavailable):
    """A leaf field is malformed or looks like personal data; nothing is appended."""


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
    validate_leaf(obj)
    return obj


def validate_leaf(obj: dict[str, Any]) -> None:
    """Check types and shapes; refuse anything that looks like a TIN."""
    if tuple(sorted(obj)) != tuple(sorted(LEAF_FIELDS)):
        raise LeafRefused("audit leaf refused: unexpected or missing fields")
    index = obj["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise LeafRefused("audit leaf refused: index")
    if obj["outcome"] not in OUTCOMES:
        raise LeafRefused("audit leaf refused: outcome")
    for name in ("subject_ref", "case_number_hash"):
        value = obj[name]
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


def _check_text(name: str, value: object, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
        raise LeafRefused(f"audit leaf refused: {name}")
    if _CONTROL.search(value):
        raise LeafRefused(f"audit leaf refused: {name} holds control characters")
    # A UUID's 12-digit group, or the policy version's hex digest, can hold 9 digits
    # by chance. Only the service-computed policy version gets the digest exemption:
    # the other text fields are chosen by clients or issuers.
    if _UUID.fullmatch(value) or (name == "policy_version" and _DIGEST.fullmatch(value)):
        return
    if _TIN_LIKE.search(value):
        raise LeafRefused(f"audit leaf refused: {name} looks like a TIN")


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
