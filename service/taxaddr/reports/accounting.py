"""Taxpayer accounting (§ 6103(p)(3)(A)): every disclosure of one taxpayer's address.

A disclosure officer asks for one TIN and name, with a reason. In numbered steps:

1. the TIN and name are normalized as the store does (an unusable TIN is a TIN never
   disclosed: an empty list);
2. the TIN becomes its keyed pseudonym; the leaves with that ``subject_ref`` and outcome
   ``disclosed`` are the taxpayer's disclosures (refusals and no-matches are not listed);
3. the name must equal the stored name: the names of the taxpayer's address records and
   of the accounting records, decrypted here only; none stored (a TIN never imported and
   never disclosed) is an empty list; a name equal to none of them is ``no_unique_match``
   (404; the lookup's leaf still commits, reason ``no_unique_match``), so a wrong name
   learns nothing of the records;
4. each disclosure's encrypted accounting record is opened (bound to its leaf index) and
   must name the same pseudonym (a record of another taxpayer never enters the answer);
5. the lookup itself appends one leaf (outcome ``accounting``, the officer's identity,
   the pseudonym, no TIN, name or reason); then the latest checkpoint is signed (it
   covers that leaf) and every disclosure gets its RFC 6962 inclusion proof against it.

All in the caller's one write transaction: the answer never cites a leaf that did not
commit with it. The disclosed address itself is not repeated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taxaddr.audit.accounting import read_accounting
from taxaddr.audit.checkpoint import parse_body
from taxaddr.audit.cosignature import note_body
from taxaddr.audit.leaf import ACCOUNTING_OUTCOME, LeafInput, PersonalData
from taxaddr.audit.log import AppendedLeaf, append_leaf
from taxaddr.audit.service import inclusion_proof, latest_checkpoint
from taxaddr.config import Settings
from taxaddr.crypto.envelope import subject_ref
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import ImportRowError, IntegrityError, NoUniqueMatch, RequestInvalid
from taxaddr.reports import signing
from taxaddr.reports.letter import accounting_letter
from taxaddr.store.lookup import stored_names
from taxaddr.store.normalize import normalize_name, normalize_tin

MIN_REASON_CHARS = 40
ACCOUNTING_POLICY_VERSION = "n/a"  # no policy decides a lookup (the role does)
ENTRY_FIELDS = (
    "disclosure_id",
    "time",
    "agency",
    "requester_id",
    "case_number",
    "court",
    "statute",
    "reason",
    "tax_periods",
)


@dataclass(frozen=True)
class Officer:
    """Who looks up: a registered disclosure officer, or the CLI's operator."""

    id: str
    agency: str
    role: str


@dataclass(frozen=True)
class AccountingResult:
    answer: dict[str, Any] | None  # None: the name is not the stored name (404)
    audit: dict[str, Any]  # the lookup's own leaf


def check_reason(reason: object) -> str:
    """The lookup's reason: at least 40 characters after trimming (else 422)."""
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_CHARS:
        raise RequestInvalid(
            f"request body invalid at reason: at least {MIN_REASON_CHARS} characters"
        )
    return reason.strip()


def subject_accounting(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    officer: Officer,
    request_id: str,
    tin: str,
    name: str,
    reason: str,
    now: datetime | None = None,
) -> AccountingResult:
    """The contract's answer ``{"disclosures", "checkpoint", "audit"}`` (module doc), or
    no answer when the name is not the stored name: the caller raises
    :class:`NoUniqueMatch` once the lookup's leaf (reason ``no_unique_match``) committed."""
    check_reason(reason)
    # 1. normalize
    try:
        want_tin = normalize_tin(tin)
    except ImportRowError:
        want_tin = None
    try:
        want_name = normalize_name(name)
    except ImportRowError:
        want_name = None
    ref = subject_ref(keystore.pseudonym_key(), want_tin) if want_tin else None

    # 2. the taxpayer's disclosure leaves, 3. the stored name, 4. the records
    entries: list[tuple[int, bytes, dict[str, Any]]] = []
    matched = True
    if want_tin is not None and ref is not None:
        records = [
            (index, leaf_hash, read_accounting(session, keystore, index))
            for index, leaf_hash in audit_repo.disclosed_leaves_of_subject(session, ref)
        ]
        names = stored_names(session, keystore, want_tin)
        names |= {str(rec.get("name")) for _, _, rec in records}
        if names and want_name not in names:
            matched = False
            records = []
        for index, leaf_hash, rec in records:
            if str(rec.get("tin")) != want_tin:
                raise IntegrityError(f"accounting record of leaf {index} names another subject")
            entries.append((index, leaf_hash, rec))

    # 5. the lookup's own leaf, the checkpoint over it, the proofs
    personal = PersonalData.of(tins=[tin], names=[name])
    appended = append_leaf(
        session,
        LeafInput(
            request_id=request_id,
            requester_id=officer.id,
            agency=officer.agency,
            role=officer.role,
            case_jti=None,
            case_number_hash=None,
            statute=None,
            outcome=ACCOUNTING_OUTCOME,
            reason_codes=() if matched else (NoUniqueMatch.code,),
            subject_ref=ref,
            policy_version=ACCOUNTING_POLICY_VERSION,
            time=now or datetime.now(UTC),
            personal=personal,
        ),
    )
    if not matched:
        return AccountingResult(None, _audit(appended))
    note = latest_checkpoint(session, keystore, settings)
    checkpoint = parse_body(note_body(note))
    disclosures = [
        {
            **_entry(rec),
            "leaf_index": index,
            "leaf_hash": leaf_hash.hex(),
            "inclusion_proof": [
                h.hex() for h in inclusion_proof(session, index, checkpoint.tree_size)
            ],
        }
        for index, leaf_hash, rec in entries
    ]
    audit = _audit(appended)
    answer: dict[str, Any] = {
        "disclosures": disclosures,
        "checkpoint": {
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash.hex(),
            "note": note,
        },
        "audit": audit,
    }
    return AccountingResult(answer, audit)


def _audit(appended: AppendedLeaf) -> dict[str, Any]:
    return {
        "leaf_index": appended.index,
        "leaf_hash": appended.leaf_hash.hex(),
        "tree_size": appended.tree_size,
    }


def _entry(record: Mapping[str, Any]) -> dict[str, Any]:
    entry = {key: record.get(key) for key in ENTRY_FIELDS}
    entry["tax_periods"] = list(record.get("tax_periods") or [])
    return entry


def to_json_bytes(answer: Mapping[str, Any]) -> bytes:
    return (json.dumps(answer, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def render_accounting(
    answer: Mapping[str, Any],
    fmt: str,
    *,
    taxpayer_name: str,
    vkey: str,
    generated_at: datetime | None = None,
) -> bytes:
    """The answer as ``json`` (no name) or the ``pdf`` letter to the taxpayer."""
    if fmt == "json":
        return to_json_bytes(answer)
    if fmt == "pdf":
        return accounting_letter(
            answer,
            taxpayer_name=taxpayer_name,
            generated_at=generated_at or datetime.now(UTC),
            vkey=vkey,
        )
    raise RequestInvalid("format must be json or pdf")


def write_signed(out: Path, data: bytes, keystore: KeyStore) -> Path:
    """Write ``out`` and ``out.sig`` (Ed25519 by the report key over the exact bytes)."""
    signing.write_signed(out, data, signing.sign(data, keystore.report_signing_key()))
    return signing.signature_path(out)


__all__ = [
    "ENTRY_FIELDS",
    "MIN_REASON_CHARS",
    "AccountingResult",
    "Officer",
    "check_reason",
    "render_accounting",
    "subject_accounting",
    "to_json_bytes",
    "write_signed",
]
