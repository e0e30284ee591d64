"""A stay's impact list: the disclosures already made inside its scope, for notification
and recall (CONTRACT "Court orders", ``taxaddr order impact``).

Shape (RFC 8785 JSON; CSV and PDF carry the same JSON)::

    {"kind": "order_impact",
     "order": {"jti", "number", "court", "nbf", "leaf_index", "scope"},
     "since": "YYYY-MM-DD" | null,
     "checkpoint": {"tree_size", "root_hash", "signed_note"},
     "disclosures": [{"disclosure_id", "time", "agency", "requester_id",
                      "case_number", "statute", "leaf_index"}]}

Which disclosures: every ``disclosed`` leaf under the checkpoint whose agency, statute,
case number and requester the stay's scope covers, made before the stay took effect in
this service — before its ``nbf`` (the contract's rule) **or** before the order's own
leaf (a stay whose ``nbf`` is earlier than the day it was applied also recalls what was
disclosed between the two) — and, with ``--since``, on or after that UTC day. Nothing
of the taxpayer: no TIN, name, address or subject pseudonym; the case number comes
from the recorded case reference and must hash to the leaf's ``case_number_hash``.

``taxaddr report verify`` checks it (:func:`verify_impact`): 1. the report key's
signature; 2. the signed checkpoint; 3. the log's leaves hash to its root; 4. the list
recomputed from those leaves equals the list signed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import merkle, queries
from taxaddr.audit.leaf import case_number_hash, parse_time
from taxaddr.audit.service import latest_checkpoint
from taxaddr.cases.orders import SCOPE_LISTS, STAY, Stay
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import snapshot_session, write_transaction
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.db.repositories import orders as orders_repo
from taxaddr.errors import IntegrityError, OrderUnknown, UsageError
from taxaddr.reports import document, signing
from taxaddr.reports.pinned import cite, open_pinned

KIND: Final = "order_impact"
COLUMNS: Final = (
    "disclosure_id",
    "time",
    "agency",
    "requester_id",
    "case_number",
    "statute",
    "leaf_index",
)
_CHUNK: Final = 1 << 14


@dataclass(frozen=True)
class _Order:
    jti: str
    number: str
    court: str
    nbf: int
    leaf_index: int
    scope: dict[str, list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "jti": self.jti,
            "number": self.number,
            "court": self.court,
            "nbf": self.nbf,
            "leaf_index": self.leaf_index,
            "scope": {name: list(self.scope.get(name, [])) for name in SCOPE_LISTS},
        }


def _applied_stay(session: Session, jti: str) -> _Order:
    row = orders_repo.order_row(session, jti)
    if row is None:
        raise OrderUnknown("no applied court order has this jti")
    jti_, kind, number, court, nbf, _exp, _lifts, _lifted_by, scope, leaf_index = row
    if kind != STAY:
        raise UsageError("order impact takes a stay (this order is a lift)")
    return _Order(str(jti_), str(number), str(court), int(nbf), int(leaf_index), json.loads(scope))


def _impacted(
    session: Session, order: _Order, since: date | None, tree_size: int
) -> tuple[bytes, list[dict[str, Any]]]:
    """One pass over the leaves under ``tree_size``: their RFC 6962 root and the
    disclosures the stay recalls, in index order."""
    stay = Stay(order.jti, order.number, order.court, order.scope)
    numbers = {ref.jti: ref.number for ref in queries.all_case_refs(session)}
    first_day = since.isoformat() if since is not None else ""
    compact = merkle.CompactRange()
    found: list[dict[str, Any]] = []
    position = 0
    while position < tree_size:
        chunk = audit_repo.leaf_range(session, position, tree_size, _CHUNK)
        if not chunk:
            break
        for index, raw in chunk:
            data = bytes(raw)
            compact.push_subtree(0, merkle.leaf_hash(data))
            leaf = json.loads(data)
            if leaf["outcome"] != "disclosed" or leaf["time"][:10] < first_day:
                continue
            before_effect = (
                int(index) < order.leaf_index or parse_time(leaf["time"]).timestamp() < order.nbf
            )
            if not before_effect:
                continue
            number = numbers.get(leaf["case_jti"])
            if number is None or case_number_hash(number) != leaf["case_number_hash"]:
                raise IntegrityError(f"leaf {index}: its case reference is not on record")
            if stay.covers(
                agency=leaf["agency"],
                statute=leaf["statute"],
                case_number=number,
                requester_id=leaf["requester_id"],
            ):
                found.append(
                    {
                        "time": leaf["time"],
                        "agency": leaf["agency"],
                        "requester_id": leaf["requester_id"],
                        "case_number": number,
                        "statute": leaf["statute"],
                        "leaf_index": int(index),
                    }
                )
        position += len(chunk)
    if compact.size != tree_size:
        raise IntegrityError(f"the audit log has {compact.size} leaves, not {tree_size}")
    ids = audit_repo.disclosure_ids(session, [d["leaf_index"] for d in found])
    disclosures = [{"disclosure_id": ids.get(d["leaf_index"], ""), **d} for d in found]
    return compact.root(), disclosures


def build_impact(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    jti: str,
    since: date | None,
    note: str,
) -> dict[str, Any]:
    """The impact list of the applied stay ``jti`` under the signed checkpoint ``note``."""
    order = _applied_stay(session, jti)
    checkpoint, cited = cite(keystore, settings, note)
    root, disclosures = _impacted(session, order, since, checkpoint.tree_size)
    if root != checkpoint.root_hash:
        raise IntegrityError("the audit log's leaves do not hash to the signed checkpoint")
    return {
        "kind": KIND,
        "order": order.as_dict(),
        "since": since.isoformat() if since is not None else None,
        "checkpoint": cited,
        "disclosures": disclosures,
    }


# -- renderings ------------------------------------------------------------------------------


def render(report: Mapping[str, Any], fmt: str) -> bytes:
    return document.render_table_document(
        report,
        fmt,
        table="disclosures",
        header=COLUMNS,
        pdf=_pdf,
    )


def parse(data: bytes) -> dict[str, Any]:
    """The impact list inside any of the three renderings (CSV and PDF carry the JSON)."""
    return document.embedded_document(data, KIND, "an order impact list")


def is_impact(data: bytes) -> bool:
    try:
        parse(data)
    except UsageError:
        return False
    return True


def _pdf(report: Mapping[str, Any]) -> bytes:
    order = report["order"]
    pdf = document.titled_pdf(
        "taxaddr court order impact list",
        "Disclosures inside a court-ordered stay",
        orientation="landscape",
    )
    scope = "; ".join(
        f"{name}: {', '.join(values)}" for name, values in order["scope"].items() if values
    )
    nbf = datetime.fromtimestamp(order["nbf"], UTC).isoformat()
    for line in (
        f"Order {order['number']} of {order['court']} (jti {order['jti']}), in force from {nbf}, "
        f"applied as audit leaf {order['leaf_index']}.",
        f"Scope: {scope or 'all disclosures'}.",
        "Listed: every disclosure inside that scope made before the stay took effect"
        + (f", from {report['since']}" if report["since"] else "")
        + ", for notification and recall of the addresses disclosed.",
        f"Audit log checkpoint: tree size {report['checkpoint']['tree_size']}, root "
        f"{report['checkpoint']['root_hash']}. Each entry names its audit leaf.",
    ):
        pdf.multi_cell(0, 5, document._latin1(line), new_x="LMARGIN", new_y="NEXT")
    document._heading(pdf, f"Disclosures ({len(report['disclosures'])})")
    document._table(
        pdf,
        COLUMNS,
        [tuple(str(row[c]) for c in COLUMNS) for row in report["disclosures"]],
        (38, 29, 14, 22, 18, 24, 12),  # characters: ids and times in full
    )
    return document.with_attachment(pdf, report, "order impact list (RFC 8785 canonical JSON)")


# -- verification ----------------------------------------------------------------------------


def verify_impact(
    session: Session, keystore: KeyStore, settings: Settings, data: bytes, signature_text: str
) -> list[str]:
    """Problems found (empty: it verifies), in numbered steps (module docstring)."""
    # 1. signature, 2. the signed checkpoint it cites
    pinned = open_pinned(keystore, settings, data, signature_text, parse)
    if isinstance(pinned, str):
        return [pinned]
    report, checkpoint = pinned.doc, pinned.checkpoint
    try:
        since = None if report["since"] is None else date.fromisoformat(report["since"])
        jti = str(report["order"]["jti"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"format: {exc}"]
    # 3. the log's leaves under it, and 4. the list recomputed from them
    try:
        order = _applied_stay(session, jti)
        root, disclosures = _impacted(session, order, since, checkpoint.tree_size)
    except (OrderUnknown, UsageError, IntegrityError) as exc:
        return [f"order: {exc.message}"]
    if root != checkpoint.root_hash:
        return ["checkpoint: the audit log's leaves do not hash to the list's signed root"]
    problems = []
    if report["order"] != order.as_dict():
        problems.append("order: differs from the applied order")
    if report["disclosures"] != disclosures:
        signed = {d.get("leaf_index") for d in report["disclosures"]}
        actual = {d["leaf_index"] for d in disclosures}
        missing, extra = sorted(actual - signed), sorted(signed - actual, key=str)
        problems.append(
            f"disclosures: differ from the audit log (missing leaves {missing[:10]}, "
            f"not in scope or not disclosed {extra[:10]})"
        )
    return problems


# -- entry point -----------------------------------------------------------------------------


def write_impact(
    engine: Engine,
    keystore: KeyStore,
    settings: Settings,
    *,
    jti: str,
    since: date | None,
    fmt: str,
    out: Path,
) -> dict[str, Any]:
    """``taxaddr order impact``: write FILE and FILE.sig (the report key's signature)."""
    if fmt not in document.FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")
    with write_transaction(engine) as session:
        _applied_stay(session, jti)  # an unknown jti or a lift: refused before any signing
        note = latest_checkpoint(session, keystore, settings)
    with snapshot_session(engine) as session:
        report = build_impact(session, keystore, settings, jti=jti, since=since, note=note)
    data = render(report, fmt)
    signing.write_signed(out, data, signing.sign(data, keystore.report_signing_key()))
    return report
