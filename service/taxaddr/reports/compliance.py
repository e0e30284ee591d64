"""Signed compliance reports: build one from the audit log, and verify one against it.

Building (:func:`build_report`) takes the log's latest signed checkpoint first
and counts only the leaves below its tree size, so every number in the report
is fixed by a checkpoint a court can hold the service to, even while the log
keeps growing. The counts come from SQL over the leaves' denormalized columns.

Verifying (:func:`verify_report`) trusts neither the report nor those columns,
in numbered steps that stop at the first failure:

1. the detached Ed25519 signature by the report key covers the file's exact bytes;
2. the file parses back into a report (JSON, CSV, or the JSON embedded in a PDF);
3. the report's signed checkpoint note verifies under the audit key and agrees
   with the report's ``tree_size`` and ``root_hash``;
4. the stored leaf JSON of leaves ``0 .. tree_size-1`` hashes (RFC 6962) to that
   root, so the leaves recounted next are exactly the ones the checkpoint signed;
5. every count (totals, rows, distinct subjects, per-case disclosures) is
   recomputed from that leaf JSON and compared; the per-case table is also
   checked against the recorded case references (number, court, quota) and each
   case number against its leaves' ``case_number_hash``; the period's trust changes
   are read from the trust-change leaves' JSON and compared entry by entry.

Every mismatch is named (``totals.disclosed: report 5, audit log 4``); no message
holds a TIN, name or address because none of them is ever read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import admin, merkle, queries
from taxaddr.audit.checkpoint import CheckpointError, open_checkpoint
from taxaddr.audit.leaf import (
    ACCOUNTING_OUTCOME,
    ADMIN_OUTCOME,
    case_number_hash,
    display_statute,
)
from taxaddr.audit.log import read_head
from taxaddr.audit.service import audit_verifier, latest_checkpoint
from taxaddr.audit.summary import check_period
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import snapshot_session, write_transaction
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import IntegrityError, UsageError
from taxaddr.reports import document, impact, signing, transparency

LEAF_CHUNK = 1 << 14
RowKey = tuple[str, str, str | None, str, str | None]
"""(day, agency, statute, outcome, first reason) of a report row."""
MAX_PROBLEMS_SHOWN = 5


class UnknownCase(UsageError):
    code = "case_unknown"
    status = 404  # over HTTP: a well-formed request for a case this service never saw

    @classmethod
    def default_message(cls) -> str:
        return "no case reference with that case number has been seen by this service"


# -- building -----------------------------------------------------------------------------


def build_report(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    case_number: str | None = None,
    now: datetime | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The report dict for the UTC days ``from_day``..``to_day``, optionally one case.

    ``note`` is the signed checkpoint to pin the counts to; without it the latest
    one is taken (which may sign a new one: then call inside a write transaction).
    """
    check_period(from_day, to_day)
    if note is None:
        note = latest_checkpoint(session, keystore, settings)
    checkpoint = open_checkpoint(note, audit_verifier(keystore, settings), settings.audit_origin)
    # Counting "leaves below the checkpoint" needs the primary key, which the covering
    # summary index lacks; when this snapshot's log is exactly the checkpointed tree
    # (the usual case: it was just taken) the bound is implied and the index suffices.
    exact = read_head(session).tree_size == checkpoint.tree_size
    below = None if exact else checkpoint.tree_size

    case_jtis: set[str] | None = None
    if case_number is not None:
        case_jtis = queries.jtis_for_case_number(session, case_number)
        if not case_jtis:
            raise UnknownCase
    rows = queries.aggregate_rows(session, from_day, to_day, below=below, case_jtis=case_jtis)
    facts = queries.period_facts(session, from_day, to_day, below=below, case_jtis=case_jtis)
    listed = case_jtis if case_jtis is not None else facts.jtis_in_period
    cases = [
        {
            "number": ref.number,
            "court": ref.court,
            "disclosures": facts.disclosed_per_jti.get(ref.jti, 0),
            "max_disclosures": ref.max_disclosures,
        }
        for ref in queries.case_refs(session, listed)
    ]
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "period": {"from": from_day.isoformat(), "to": to_day.isoformat()},
        "case_filter": case_number,
        "generated_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checkpoint": {
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash.hex(),
            "signed_note": note,
        },
        "totals": queries.totals(rows),
        "distinct_subjects": facts.distinct_subjects,
        "rows": [row.as_dict() for row in rows],
        "cases": sorted(cases, key=_case_key),
        "trust_changes": [
            _trust_entry(change.as_dict())
            for change in admin.trust_changes(session, from_day, to_day)
            if change.leaf_index < checkpoint.tree_size
        ],
    }


def _trust_entry(change: Mapping[str, Any]) -> dict[str, Any]:
    """A trust change as a report lists it (from :class:`~taxaddr.audit.admin.TrustChange`
    or, when verifying, from the leaf's own JSON)."""
    return {key: change[key] for key in document.TRUST_KEYS}


@dataclass(frozen=True)
class SignedReport:
    report: dict[str, Any]
    data: bytes
    signature: str
    fmt: str


def signed_report(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    fmt: str,
    case_number: str | None = None,
    now: datetime | None = None,
    note: str | None = None,
) -> SignedReport:
    """Build, render and sign one report in ``session``."""
    if fmt not in document.FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")
    report = build_report(
        session,
        keystore,
        settings,
        from_day=from_day,
        to_day=to_day,
        case_number=case_number,
        now=now,
        note=note,
    )
    data = document.render(report, fmt)
    return SignedReport(report, data, signing.sign(data, keystore.report_signing_key()), fmt)


def produce_report(
    engine: Engine,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    fmt: str,
    case_number: str | None = None,
) -> SignedReport:
    """What the API endpoint and the CLI call: checkpoint first, then count.

    Only taking the checkpoint needs the (short) write transaction; the counting
    reads leaves below the checkpoint's tree size, which never change, so it runs
    in a read session and never holds up disclosures.
    """
    if fmt not in document.FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")
    check_period(from_day, to_day)
    with write_transaction(engine) as session:
        note = latest_checkpoint(session, keystore, settings)
    with snapshot_session(engine) as session:
        return signed_report(
            session,
            keystore,
            settings,
            from_day=from_day,
            to_day=to_day,
            fmt=fmt,
            case_number=case_number,
            note=note,
        )


def write_transparency_report(
    engine: Engine,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    threshold: int,
    fmt: str,
    out: Path,
) -> dict[str, Any]:
    """``taxaddr report transparency``: write FILE and FILE.sig."""
    report, data, signature = transparency.produce_transparency(
        engine,
        keystore,
        settings,
        from_day=from_day,
        to_day=to_day,
        threshold=threshold,
        fmt=fmt,
    )
    signing.write_signed(out, data, signature)
    return report


def write_compliance_report(
    engine: Engine,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    fmt: str,
    out: Path,
    case_number: str | None = None,
) -> SignedReport:
    """``taxaddr report compliance``: write FILE and FILE.sig."""
    result = produce_report(
        engine,
        keystore,
        settings,
        from_day=from_day,
        to_day=to_day,
        fmt=fmt,
        case_number=case_number,
    )
    signing.write_signed(out, result.data, result.signature)
    return result


signature_path = signing.signature_path


def _case_key(case: Mapping[str, Any]) -> tuple[str, str, int, int]:
    return (case["number"], case["court"], case["disclosures"], case["max_disclosures"])


# -- verification -------------------------------------------------------------------------


@dataclass
class ReportCheck:
    ok: bool
    problems: list[str] = field(default_factory=list)
    summary: str = ""


def verify_report(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    data: bytes,
    signature_text: str,
) -> ReportCheck:
    """Check a report file against its signature and the audit log (steps in the module doc)."""
    # 1. signature over the exact bytes
    public_key = keystore.report_signing_key().public_key()
    if not signing.verify(data, signature_text, public_key):
        return ReportCheck(
            False, ["signature: the .sig file is not the report key's signature over this file"]
        )
    # 2. parse
    try:
        report = document.parse(data)
    except UsageError as exc:
        return ReportCheck(False, [f"format: {exc.message}"])
    try:
        from_day = date.fromisoformat(report["period"]["from"])
        to_day = date.fromisoformat(report["period"]["to"])
        check_period(from_day, to_day)
    except (ValueError, UsageError):
        return ReportCheck(False, ["period: not a valid pair of days"])
    # 3. the signed checkpoint
    cited = report["checkpoint"]
    try:
        checkpoint = open_checkpoint(
            str(cited.get("signed_note", "")),
            audit_verifier(keystore, settings),
            settings.audit_origin,
        )
    except CheckpointError as exc:
        return ReportCheck(False, [f"checkpoint: signed note does not verify ({exc.message})"])
    if checkpoint.tree_size != cited["tree_size"]:
        return ReportCheck(False, ["checkpoint.tree_size: differs from the signed note"])
    if checkpoint.root_hash.hex() != cited["root_hash"]:
        return ReportCheck(False, ["checkpoint.root_hash: differs from the signed note"])
    # 4 + 5. recompute from the leaf JSON
    case_filter = report.get("case_filter")
    case_jtis = (
        queries.jtis_for_case_number(session, case_filter) if case_filter is not None else None
    )
    try:
        recount = _recount(session, checkpoint.tree_size, from_day, to_day, case_jtis)
    except IntegrityError as exc:
        return ReportCheck(False, [exc.message])
    if recount.root != checkpoint.root_hash:
        return ReportCheck(
            False,
            [
                f"checkpoint.root_hash: audit log leaves 0..{checkpoint.tree_size - 1} "
                "do not hash to the report's signed root"
            ],
        )
    problems = _compare_counts(report, recount)
    problems += _compare_cases(session, report, recount, case_jtis)
    problems += _compare_trust_changes(report, recount)
    if problems:
        return ReportCheck(False, problems)
    totals = report["totals"]
    summary = (
        f"ok: signature valid; {totals['requests']} requests ({totals['disclosed']} disclosed) "
        f"from {from_day} to {to_day} match audit log leaves 0..{checkpoint.tree_size - 1} "
        f"(root {checkpoint.root_hash.hex()})"
    )
    return ReportCheck(True, [], summary)


@dataclass
class _Recount:
    root: bytes
    rows: Counter[RowKey]
    subjects: set[str]
    disclosed_by_jti: Counter[str]
    jtis_in_period: set[str]
    number_hashes: dict[str, set[str | None]]
    trust_changes: list[dict[str, Any]]


def _leaf_chunks(session: Session, below: int) -> Iterator[list[tuple[int, bytes]]]:
    position = 0
    while position < below:
        rows = audit_repo.leaf_range(session, position, below, LEAF_CHUNK)
        if not rows:
            return
        yield [(int(i), bytes(d)) for i, d in rows]
        position = int(rows[-1][0]) + 1


def _recount(
    session: Session,
    below: int,
    from_day: date,
    to_day: date,
    case_jtis: set[str] | None,
) -> _Recount:
    lo, hi = from_day.isoformat(), to_day.isoformat()
    compact = merkle.CompactRange()
    rows: Counter[RowKey] = Counter()
    subjects: set[str] = set()
    disclosed_by_jti: Counter[str] = Counter()
    jtis_in_period: set[str] = set()
    number_hashes: dict[str, set[str | None]] = {}
    trust: list[dict[str, Any]] = []
    expected = 0
    for chunk in _leaf_chunks(session, below):
        for index, data in chunk:
            if index != expected:
                raise IntegrityError(f"audit log: leaf {expected} is missing")
            compact.push_subtree(0, merkle.leaf_hash(data))
            try:
                leaf = json.loads(data)
                day = str(leaf["time"])[:10]
                jti = leaf["case_jti"]
                outcome = leaf["outcome"]
                reasons = leaf["reason_codes"]
            except (ValueError, KeyError, TypeError):
                raise IntegrityError(f"audit log: leaf {index} is not a leaf object") from None
            if leaf.get("index") != index:
                raise IntegrityError(f"audit log: leaf {index} carries index {leaf.get('index')}")
            expected += 1
            if outcome == ADMIN_OUTCOME:  # a trust change, not a request
                if lo <= day <= hi:
                    trust.append(_trust_leaf(leaf))
                continue
            if outcome == ACCOUNTING_OUTCOME:  # a taxpayer-accounting lookup, not a request
                continue
            if jti is not None:
                number_hashes.setdefault(jti, set()).add(leaf.get("case_number_hash"))
                if outcome == "disclosed":
                    disclosed_by_jti[jti] += 1
            if not lo <= day <= hi or (case_jtis is not None and jti not in case_jtis):
                continue
            first_reason = reasons[0] if reasons else None
            statute = display_statute(leaf["statute"])
            rows[(day, leaf["agency"], statute, outcome, first_reason)] += 1
            if jti is not None:
                jtis_in_period.add(jti)
            if outcome == "disclosed" and leaf["subject_ref"] is not None:
                subjects.add(leaf["subject_ref"])
    if expected != below:
        raise IntegrityError(
            f"checkpoint.tree_size: the audit log holds {expected} leaves, the report cites {below}"
        )
    return _Recount(
        compact.root(), rows, subjects, disclosed_by_jti, jtis_in_period, number_hashes, trust
    )


def _trust_leaf(leaf: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return _trust_entry(
            {
                "leaf_index": leaf["index"],
                "time": leaf["time"],
                "action": leaf["reason_codes"][0],
                "target": leaf["target"],
                "requester_id": leaf["requester_id"],
                "agency": leaf["agency"],
                "role": leaf["role"],
            }
        )
    except (KeyError, IndexError, TypeError):
        raise IntegrityError(f"audit log: leaf {leaf.get('index')} is not a trust change") from None


def _compare_counts(report: Mapping[str, Any], recount: _Recount) -> list[str]:
    problems: list[str] = []
    actual_rows = [
        {"day": d, "agency": a, "statute": s, "outcome": o, "reason": r, "count": n}
        for (d, a, s, o, r), n in recount.rows.items()
    ]
    actual_totals = queries.totals(actual_rows)
    for key in document.OUTCOME_KEYS:
        claimed = report["totals"][key]
        if claimed != actual_totals[key]:
            problems.append(f"totals.{key}: report {claimed}, audit log {actual_totals[key]}")
    if report["distinct_subjects"] != len(recount.subjects):
        problems.append(
            f"distinct_subjects: report {report['distinct_subjects']}, "
            f"audit log {len(recount.subjects)}"
        )
    claimed_rows: Counter[RowKey] = Counter()
    for row in report["rows"]:
        # A report made before old free-text statutes were shown as "other" still verifies.
        statute = display_statute(row["statute"])
        row_key: RowKey = (row["day"], row["agency"], statute, row["outcome"], row["reason"])
        claimed_rows[row_key] += row["count"]
    for row_key in sorted(set(claimed_rows) | set(recount.rows), key=_row_key):
        if claimed_rows[row_key] != recount.rows[row_key]:
            day, agency, statute, outcome, reason = row_key
            problems.append(
                f"rows[{day} {agency} {statute or '-'} {outcome} {reason or '-'}]: "
                f"report {claimed_rows[row_key]}, audit log {recount.rows[row_key]}"
            )
    return problems


def _compare_trust_changes(report: Mapping[str, Any], recount: _Recount) -> list[str]:
    if "trust_changes" not in report:  # a report made before trust changes were leaves
        return []
    claimed = {c["leaf_index"]: c for c in report["trust_changes"]}
    actual = {c["leaf_index"]: c for c in recount.trust_changes}
    problems = []
    for index in sorted(set(claimed) | set(actual)):
        if index not in actual:
            problems.append(f"trust_changes[{index}]: not a trust change of the period in the log")
        elif index not in claimed:
            action = actual[index]["action"]
            problems.append(f"trust_changes[{index}]: {action} in the log, missing from the report")
        elif claimed[index] != actual[index]:
            problems.append(f"trust_changes[{index}]: differs from the audit log's leaf")
    if not problems and len(report["trust_changes"]) != len(claimed):
        problems.append("trust_changes: an entry is listed twice")
    return problems


def _row_key(key: RowKey) -> tuple[str, ...]:
    return tuple(part or "" for part in key)


def _compare_cases(
    session: Session,
    report: Mapping[str, Any],
    recount: _Recount,
    case_jtis: set[str] | None,
) -> list[str]:
    problems: list[str] = []
    listed = case_jtis if case_jtis is not None else recount.jtis_in_period
    refs = queries.case_refs(session, listed)
    for ref in refs:
        hashes = recount.number_hashes.get(ref.jti, set())
        if hashes and hashes != {case_number_hash(ref.number)}:
            problems.append(
                f"cases[{ref.number}]: the recorded case number does not match its audit leaves"
            )
    expected = sorted(
        (
            {
                "number": ref.number,
                "court": ref.court,
                "disclosures": recount.disclosed_by_jti.get(ref.jti, 0),
                "max_disclosures": ref.max_disclosures,
            }
            for ref in refs
        ),
        key=_case_key,
    )
    claimed = sorted(report["cases"], key=_case_key)
    if claimed != expected:
        claimed_set = {_case_key(c) for c in claimed}
        expected_set = {_case_key(c) for c in expected}
        for number, court, used, quota in sorted(claimed_set - expected_set):
            problems.append(
                f"cases[{number}]: report says {used} of {quota} disclosures at {court}, "
                "audit log and case records disagree"
            )
        for number, court, used, quota in sorted(expected_set - claimed_set):
            problems.append(
                f"cases[{number}]: audit log has {used} of {quota} disclosures at {court}, "
                "report disagrees"
            )
        if not problems:
            problems.append("cases: the per-case table does not match")
    return problems


def verify_report_file(
    engine: Engine, keystore: KeyStore, settings: Settings, path: Path
) -> ReportCheck:
    """``taxaddr report verify FILE``: raises :class:`IntegrityError` naming what is wrong."""
    sig_path = signature_path(path)
    try:
        data = path.read_bytes()
    except OSError:
        raise UsageError(f"cannot read report file {path}") from None
    try:
        signature_text = sig_path.read_text("ascii")
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"cannot read signature file {sig_path}") from None
    with engine.connect() as conn, Session(bind=conn) as session:
        if transparency.is_transparency(data):
            problems = transparency.verify_transparency(
                session, keystore, settings, data, signature_text
            )
            check = ReportCheck(not problems, problems, "ok: transparency report verified")
        elif impact.is_impact(data):
            problems = impact.verify_impact(session, keystore, settings, data, signature_text)
            check = ReportCheck(not problems, problems, "ok: order impact list verified")
        else:
            check = verify_report(session, keystore, settings, data, signature_text)
    if not check.ok:
        shown = check.problems[:MAX_PROBLEMS_SHOWN]
        more = len(check.problems) - len(shown)
        suffix = f"; and {more} more" if more > 0 else ""
        raise IntegrityError("report does not verify: " + "; ".join(shown) + suffix)
    return check
