"""The public transparency report: volumes by agency, statute and outcome, with small
cells suppressed, signed, and pinned to a signed checkpoint (CONTRACT "Public
transparency report").

Shape::

    {"kind": "transparency", "period": {"from", "to"},
     "checkpoint": {"tree_size", "root_hash", "signed_note"}, "threshold": K,
     "totals": {"requests", "disclosed", "denied", "no_match", "error"},
     "rows": [{"agency", "statute", "outcome", "count"}]}

A row's count below K is the string ``"<K"``. No case number, requester id or day.

Suppression must not be undone by subtraction: a total is an integer only when no
row of its outcome (for ``requests``: no row at all) is suppressed; otherwise it is
the string ``">=N"``, N the sum of that outcome's published counts — a true lower
bound that says nothing the rows do not. Trust-change and accounting leaves are not
requests and are not counted.

``taxaddr report verify`` checks it (:func:`verify_transparency`): signature, checkpoint,
then every cell and total recomputed from the leaf JSON under the checkpoint.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from taxaddr.audit import merkle, queries
from taxaddr.audit.leaf import display_statute
from taxaddr.audit.service import latest_checkpoint
from taxaddr.audit.summary import check_period
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db import snapshot_session, write_transaction
from taxaddr.db.repositories import audit as audit_repo
from taxaddr.errors import UsageError
from taxaddr.reports import document, signing
from taxaddr.reports.pinned import cite, open_pinned

KIND: Final = "transparency"
DEFAULT_THRESHOLD: Final = 10
OUTCOMES: Final = ("disclosed", "denied", "no_match", "error")
REQUEST_OUTCOMES: Final = frozenset(OUTCOMES)
CellKey = tuple[str, str, str]  # agency, statute, outcome


def _cell(count: int, threshold: int) -> int | str:
    return count if count >= threshold else f"<{threshold}"


def publish(
    cells: Mapping[CellKey, int], threshold: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows with small cells suppressed, and totals that cannot undo the suppression."""
    rows = [
        {"agency": a, "statute": s, "outcome": o, "count": _cell(n, threshold)}
        for (a, s, o), n in sorted(cells.items())
        if n > 0
    ]
    totals: dict[str, Any] = {}
    any_hidden = False
    published_all = 0
    for outcome in OUTCOMES:
        counts = [n for (_a, _s, o), n in cells.items() if o == outcome and n > 0]
        shown = sum(n for n in counts if n >= threshold)
        hidden = any(n < threshold for n in counts)
        any_hidden = any_hidden or hidden
        published_all += shown
        totals[outcome] = f">={shown}" if hidden else shown
    totals["requests"] = f">={published_all}" if any_hidden else published_all
    return rows, totals


def _cells(session: Session, from_day: date, to_day: date, below: int) -> Counter[CellKey]:
    cells: Counter[CellKey] = Counter()
    for row in queries.aggregate_rows(session, from_day, to_day, below=below):
        if row.outcome in REQUEST_OUTCOMES:
            cells[(row.agency, row.statute or "(none)", row.outcome)] += row.count
    return cells


def build_transparency(
    session: Session,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    threshold: int = DEFAULT_THRESHOLD,
    note: str | None = None,
) -> dict[str, Any]:
    check_period(from_day, to_day)
    if not 1 <= threshold <= 1_000_000:
        raise UsageError("--threshold must be between 1 and 1000000")
    note = note or latest_checkpoint(session, keystore, settings)
    checkpoint, cited = cite(keystore, settings, note)
    rows, totals = publish(_cells(session, from_day, to_day, checkpoint.tree_size), threshold)
    return {
        "kind": KIND,
        "period": {"from": from_day.isoformat(), "to": to_day.isoformat()},
        "checkpoint": cited,
        "threshold": threshold,
        "totals": totals,
        "rows": rows,
    }


# -- renderings ------------------------------------------------------------------------------


def render(report: Mapping[str, Any], fmt: str) -> bytes:
    return document.render_table_document(
        report,
        fmt,
        table="rows",
        header=("agency", "statute", "outcome", "count"),
        pdf=_pdf,
    )


def parse(data: bytes) -> dict[str, Any]:
    """The report inside any of the three renderings (CSV and PDF carry the JSON)."""
    return document.embedded_document(data, KIND, "a transparency report")


def _pdf(report: Mapping[str, Any]) -> bytes:
    pdf = document.titled_pdf("taxaddr transparency report", "taxaddr transparency report")
    period = report["period"]
    k = report["threshold"]
    for line in (
        f"Period: {period['from']} to {period['to']} (UTC days, inclusive)",
        f"Counts below {k} are shown as <{k}; a total with a hidden part is a lower bound (>=).",
        f"Audit log checkpoint: tree size {report['checkpoint']['tree_size']}, root "
        f"{report['checkpoint']['root_hash']}",
    ):
        pdf.multi_cell(0, 5, document._latin1(line), new_x="LMARGIN", new_y="NEXT")
    document._heading(pdf, "Totals")
    for key in ("requests", *OUTCOMES):
        pdf.cell(0, 5, f"{key}: {report['totals'][key]}", new_x="LMARGIN", new_y="NEXT")
    document._heading(pdf, "By agency, statute and outcome")
    document._table(
        pdf,
        ("agency", "statute", "outcome", "count"),
        [(r["agency"], r["statute"], r["outcome"], str(r["count"])) for r in report["rows"]],
        (30, 40, 15, 10),
    )
    return document.with_attachment(
        pdf, report, "transparency report data (RFC 8785 canonical JSON)"
    )


# -- verification ----------------------------------------------------------------------------


def verify_transparency(
    session: Session, keystore: KeyStore, settings: Settings, data: bytes, signature_text: str
) -> list[str]:
    """Problems found (empty: it verifies). 1. signature; 2. parse; 3. checkpoint;
    4. the leaves under it hash to its root; 5. every cell and total recomputed."""
    pinned = open_pinned(keystore, settings, data, signature_text, parse)
    if isinstance(pinned, str):
        return [pinned]
    report, checkpoint = pinned.doc, pinned.checkpoint
    try:
        from_day = date.fromisoformat(report["period"]["from"])
        to_day = date.fromisoformat(report["period"]["to"])
        threshold = int(report["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"format: {exc}"]
    cells: Counter[CellKey] = Counter()
    compact = merkle.CompactRange()
    lo, hi = from_day.isoformat(), to_day.isoformat()
    position = 0
    while position < checkpoint.tree_size:
        chunk = audit_repo.leaf_range(session, position, checkpoint.tree_size, 1 << 14)
        if not chunk:
            break
        for _index, raw in chunk:
            data_bytes = bytes(raw)
            compact.push_subtree(0, merkle.leaf_hash(data_bytes))
            leaf = json.loads(data_bytes)
            if leaf["outcome"] in REQUEST_OUTCOMES and lo <= leaf["time"][:10] <= hi:
                statute = display_statute(leaf["statute"]) or "(none)"
                cells[(leaf["agency"], statute, leaf["outcome"])] += 1
        position += len(chunk)
    if compact.size != checkpoint.tree_size or compact.root() != checkpoint.root_hash:
        return ["checkpoint: the audit log's leaves do not hash to the report's signed root"]
    rows, totals = publish(cells, threshold)
    problems = []
    if rows != report["rows"]:
        problems.append("rows: differ from the audit log")
    for key, value in totals.items():
        if report["totals"].get(key) != value:
            problems.append(f"totals.{key}: report {report['totals'].get(key)}, audit log {value}")
    return problems


# -- entry points ---------------------------------------------------------------------------


def produce_transparency(
    engine: Engine,
    keystore: KeyStore,
    settings: Settings,
    *,
    from_day: date,
    to_day: date,
    threshold: int,
    fmt: str,
) -> tuple[dict[str, Any], bytes, str]:
    """The report, its bytes in ``fmt`` and their signature (the API and the CLI)."""
    if fmt not in document.FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")
    check_period(from_day, to_day)
    with write_transaction(engine) as session:
        note = latest_checkpoint(session, keystore, settings)
    with snapshot_session(engine) as session:
        report = build_transparency(
            session,
            keystore,
            settings,
            from_day=from_day,
            to_day=to_day,
            threshold=threshold,
            note=note,
        )
    data = render(report, fmt)
    return report, data, signing.sign(data, keystore.report_signing_key())


def is_transparency(data: bytes) -> bool:
    try:
        parse(data)
    except UsageError:
        return False
    return True
