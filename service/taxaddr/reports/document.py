"""The compliance report document: its shape and its three renderings.

A report is a plain JSON value (the contract's shape, plus ``case_filter``)::

    {"period": {"from", "to"}, "case_filter": null | "<case number>",
     "generated_at", "checkpoint": {"tree_size", "root_hash", "signed_note"},
     "totals": {"requests", "disclosed", "denied", "no_match", "error"},
     "distinct_subjects", "rows": [{"day", "agency", "statute", "outcome",
     "reason", "count"}], "cases": [{"number", "court", "disclosures",
     "max_disclosures"}], "trust_changes": [{"leaf_index", "time", "action",
     "target", "requester_id", "agency", "role"}]}

``trust_changes`` (the period's trust-change leaves) is absent from reports made
before trust changes were leaves; such reports still parse and verify.

JSON is RFC 8785 canonical bytes. CSV carries the same values in sections (the
first cell of every line names its section; a section's first line is its
header). PDF shows everything as readable tables and carries the canonical
JSON as an embedded file (``report.json``) so that ``taxaddr report verify`` can
re-check a PDF exactly; the detached signature covers the PDF's bytes, and so
the embedded JSON too. :func:`parse` is the inverse of :func:`render` for each
format.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import rfc8785
from fpdf import FPDF

from taxaddr.errors import UsageError

FORMATS: Final = ("json", "csv", "pdf")
OUTCOME_KEYS: Final = ("requests", "disclosed", "denied", "no_match", "error")
ROW_KEYS: Final = ("day", "agency", "statute", "outcome", "reason", "count")
CASE_KEYS: Final = ("number", "court", "disclosures", "max_disclosures")
TRUST_KEYS: Final = ("leaf_index", "time", "action", "target", "requester_id", "agency", "role")
PDF_ATTACHMENT: Final = "report.json"

Report = dict[str, Any]


class ReportFormatError(UsageError):
    """A report file that cannot be read back as a compliance report."""

    code = "report_unreadable"


# -- JSON ---------------------------------------------------------------------------------


def to_json(report: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the same report always gives the same bytes."""
    data: bytes = rfc8785.dumps(dict(report))
    return data


def from_json(data: bytes) -> Report:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportFormatError("report is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ReportFormatError("report JSON is not an object")
    check_shape(value)
    return value


def check_shape(report: Mapping[str, Any]) -> None:
    """Raise :class:`ReportFormatError` unless ``report`` has the report's shape."""
    try:
        _str(report["period"]["from"])
        _str(report["period"]["to"])
        _str(report["generated_at"])
        _int(report["checkpoint"]["tree_size"])
        _str(report["checkpoint"]["root_hash"])
        for key in OUTCOME_KEYS:
            _int(report["totals"][key])
        _int(report["distinct_subjects"])
        for row in report["rows"]:
            _int(row["count"])
            for key in ROW_KEYS[:-1]:
                _opt_str(row[key])
        for case in report["cases"]:
            _str(case["number"])
            _str(case["court"])
            _int(case["disclosures"])
            _int(case["max_disclosures"])
        _opt_str(report.get("case_filter"))
        for change in report.get("trust_changes", []):
            _int(change["leaf_index"])
            for key in TRUST_KEYS[1:]:
                _str(change[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportFormatError("report does not have the compliance report's fields") from exc


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


# -- CSV ----------------------------------------------------------------------------------

_SUMMARY_FIELDS: Final = (
    ("period_from", ("period", "from")),
    ("period_to", ("period", "to")),
    ("case_filter", ("case_filter",)),
    ("generated_at", ("generated_at",)),
    ("checkpoint_tree_size", ("checkpoint", "tree_size")),
    ("checkpoint_root_hash", ("checkpoint", "root_hash")),
    ("checkpoint_signed_note", ("checkpoint", "signed_note")),
    ("distinct_subjects", ("distinct_subjects",)),
)
_INT_SUMMARY: Final = frozenset({"checkpoint_tree_size", "distinct_subjects"})


def to_csv(report: Mapping[str, Any]) -> bytes:
    """Sections ``report``, ``totals``, ``rows``, ``cases``; a blank line between them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["report", "field", "value"])
    for name, path in _SUMMARY_FIELDS:
        value: Any = report
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        writer.writerow(["report", name, "" if value is None else value])
    writer.writerow([])
    writer.writerow(["totals", *OUTCOME_KEYS])
    writer.writerow(["totals", *(report["totals"][k] for k in OUTCOME_KEYS)])
    writer.writerow([])
    writer.writerow(["rows", *ROW_KEYS])
    for row in report["rows"]:
        writer.writerow(["rows", *("" if row[k] is None else row[k] for k in ROW_KEYS)])
    writer.writerow([])
    writer.writerow(["cases", *CASE_KEYS])
    for case in report["cases"]:
        writer.writerow(["cases", *(case[k] for k in CASE_KEYS)])
    if "trust_changes" in report:
        writer.writerow([])
        writer.writerow(["trust_changes", *TRUST_KEYS])
        for change in report["trust_changes"]:
            writer.writerow(["trust_changes", *(change[k] for k in TRUST_KEYS)])
    return out.getvalue().encode("utf-8")


def from_csv(data: bytes) -> Report:
    try:
        text = data.decode("utf-8")
        lines = [line for line in csv.reader(io.StringIO(text, newline="")) if line]
        sections: dict[str, list[list[str]]] = {}
        for line in lines:
            sections.setdefault(line[0], []).append(line[1:])
        report = _csv_report(sections)
    except (UnicodeDecodeError, csv.Error, KeyError, IndexError, ValueError) as exc:
        raise ReportFormatError("report is not a compliance report CSV") from exc
    check_shape(report)
    return report


def _csv_report(sections: Mapping[str, list[list[str]]]) -> Report:
    summary_lines = sections["report"]
    if summary_lines[0] != ["field", "value"]:
        raise ValueError("report section header")
    summary = {line[0]: line[1] for line in summary_lines[1:]}
    if set(summary) != {name for name, _ in _SUMMARY_FIELDS}:
        raise ValueError("report section fields")
    totals_header, totals_values = sections["totals"]
    if tuple(totals_header) != OUTCOME_KEYS:
        raise ValueError("totals header")
    rows_header, *row_lines = sections["rows"]
    cases_header, *case_lines = sections["cases"]
    if tuple(rows_header) != ROW_KEYS or tuple(cases_header) != CASE_KEYS:
        raise ValueError("section header")
    report = _csv_body(summary, totals_values, row_lines, case_lines)
    if "trust_changes" in sections:
        trust_header, *trust_lines = sections["trust_changes"]
        if tuple(trust_header) != TRUST_KEYS:
            raise ValueError("trust_changes header")
        report["trust_changes"] = [
            {"leaf_index": int(line[0]), **dict(zip(TRUST_KEYS[1:], line[1:], strict=True))}
            for line in trust_lines
        ]
    return report


def _csv_body(
    summary: Mapping[str, str],
    totals_values: list[str],
    row_lines: list[list[str]],
    case_lines: list[list[str]],
) -> Report:
    return {
        "period": {"from": summary["period_from"], "to": summary["period_to"]},
        "case_filter": summary["case_filter"] or None,
        "generated_at": summary["generated_at"],
        "checkpoint": {
            "tree_size": int(summary["checkpoint_tree_size"]),
            "root_hash": summary["checkpoint_root_hash"],
            "signed_note": summary["checkpoint_signed_note"],
        },
        "totals": {k: int(v) for k, v in zip(OUTCOME_KEYS, totals_values, strict=True)},
        "distinct_subjects": int(summary["distinct_subjects"]),
        "rows": [
            {
                **{k: (v or None) for k, v in zip(ROW_KEYS[:-1], line[:-1], strict=True)},
                "count": int(line[-1]),
            }
            for line in row_lines
        ],
        "cases": [
            {
                "number": line[0],
                "court": line[1],
                "disclosures": int(line[2]),
                "max_disclosures": int(line[3]),
            }
            for line in case_lines
        ],
    }


# -- PDF ----------------------------------------------------------------------------------


def to_pdf(report: Mapping[str, Any]) -> bytes:
    """A readable PDF (tables, embedded text) that carries the canonical JSON as a file."""
    generated = _parse_generated(report["generated_at"])
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(generated)
    pdf.set_title("taxaddr compliance report")
    pdf.set_author("taxaddr")
    pdf.set_subject(f"Disclosures {report['period']['from']} to {report['period']['to']}")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(15, 15, 15)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "taxaddr compliance report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    intro = [
        f"Period: {report['period']['from']} to {report['period']['to']} (UTC days, inclusive)",
        f"Case: {report.get('case_filter') or 'all cases'}",
        f"Generated at: {report['generated_at']}",
        f"Audit log checkpoint: tree size {report['checkpoint']['tree_size']}",
        f"Checkpoint root hash (hex): {report['checkpoint']['root_hash']}",
    ]
    for line in intro:
        pdf.multi_cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.multi_cell(
        0,
        4,
        _latin1(
            "Every count below is recomputed from the audit log by `taxaddr report verify`. "
            "Taxpayers are counted by keyed pseudonym; this report holds no TIN, name or "
            "address. The file's detached Ed25519 signature is in the .sig file next to it; "
            f"the report's data is embedded as {PDF_ATTACHMENT}."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )

    totals = report["totals"]
    _heading(pdf, "Totals")
    for line in (
        f"Total requests: {totals['requests']}",
        f"Disclosed: {totals['disclosed']}",
        f"Denied: {totals['denied']}",
        f"No unique match: {totals['no_match']}",
        f"Error: {totals['error']}",
        f"Distinct taxpayers affected (disclosed, by pseudonym): {report['distinct_subjects']}",
    ):
        pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "By day")
    _table(
        pdf,
        ("day", "requests", "disclosed", "denied", "no unique match", "error"),
        _by_day(report["rows"]),
        (12, 10, 11, 10, 17, 8),
    )
    _heading(pdf, "By agency")
    _table(pdf, ("agency", "requests", "disclosed"), _by(report["rows"], "agency"), (40, 12, 12))
    _heading(pdf, "By statute")
    _table(pdf, ("statute", "requests", "disclosed"), _by(report["rows"], "statute"), (40, 12, 12))
    _heading(pdf, "By outcome and refusal reason")
    _table(pdf, ("outcome", "reason", "count"), _by_reason(report["rows"]), (12, 30, 10))
    _heading(pdf, "Cases (disclosures used of quota)")
    _table(
        pdf,
        ("case number", "court", "disclosures", "quota"),
        [
            (c["number"], c["court"], str(c["disclosures"]), str(c["max_disclosures"]))
            for c in report["cases"]
        ],
        (30, 30, 13, 8),
    )
    if "trust_changes" in report:
        _heading(pdf, "Trust changes (who changed what is trusted)")
        _table(
            pdf,
            ("entry", "time", "action", "target", "by"),
            [
                (str(c["leaf_index"]), c["time"][:19], c["action"], c["target"], c["requester_id"])
                for c in report["trust_changes"]
            ],
            (8, 18, 16, 44, 20),
            font_size=6,
        )
    _heading(pdf, "Daily detail")
    _table(
        pdf,
        ROW_KEYS,
        ([("-" if r[k] is None else str(r[k])) for k in ROW_KEYS] for r in report["rows"]),
        (11, 14, 24, 10, 25, 10),
        font_size=7,
    )
    _heading(pdf, "Signed checkpoint (C2SP signed note)")
    pdf.set_font("Courier", "", 7)
    pdf.multi_cell(
        0, 3.5, _latin1(report["checkpoint"].get("signed_note", "")), new_x="LMARGIN", new_y="NEXT"
    )

    pdf.embed_file(
        bytes=to_json(report),
        basename=PDF_ATTACHMENT,
        modification_date=generated,
        mime_type="application/json",
        desc="compliance report data (RFC 8785 canonical JSON)",
        compress=True,
    )
    out = pdf.output()
    return bytes(out)


def from_pdf(data: bytes) -> Report:
    """Read the embedded ``report.json`` back (only from PDFs :func:`to_pdf` wrote)."""
    if not data.startswith(b"%PDF-"):
        raise ReportFormatError("report is not a PDF")
    payload = _embedded_json(data)
    if payload is None:
        raise ReportFormatError(f"PDF report has no embedded {PDF_ATTACHMENT}")
    return from_json(payload)


# fpdf2 writes the embedded file as one stream object with /Type /EmbeddedFile.
_OBJECT = re.compile(rb"\d+ \d+ obj\s*<<(?P<dict>.*?)>>\s*stream\r?\n", re.DOTALL)
_LENGTH = re.compile(rb"/Length (\d+)")


def _embedded_json(data: bytes) -> bytes | None:
    for match in _OBJECT.finditer(data):
        head = match.group("dict")
        if b"endobj" in head or b"/Type /EmbeddedFile" not in head:
            continue
        length = _LENGTH.search(head)
        if length is None:
            continue
        body = data[match.end() : match.end() + int(length.group(1))]
        if b"/FlateDecode" in head:
            try:
                body = zlib.decompress(body)
            except zlib.error:
                continue
        if body.startswith(b"{"):
            return body
    return None


def _parse_generated(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


def _latin1(text: str) -> str:
    """Core PDF fonts are Latin-1; the embedded JSON keeps the exact text."""
    text = text.replace("\u2014", "--").replace("\u2013", "-")
    return text.encode("latin-1", "replace").decode("latin-1")


def _heading(pdf: Any, title: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _table(
    pdf: Any,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    chars: Sequence[int],
    font_size: float = 8,
) -> None:
    """A table as fixed-width (Courier) lines drawn with ``text()``.

    fpdf2's ``table()``/``cell()`` cost about a millisecond per cell; a report
    over a large log has thousands of rows, and ``text()`` is ~100x cheaper.
    The header repeats on every page.
    """
    step = font_size * 0.45
    bottom = pdf.h - pdf.b_margin
    x = pdf.l_margin

    def line(values: Sequence[str]) -> str:
        cells = []
        for width, value in zip(chars, values, strict=True):
            text = value if len(value) < width else value[: width - 2] + "~"
            cells.append(text.ljust(width))
        return _latin1("".join(cells).rstrip())

    def draw_header() -> None:
        pdf.set_font("Courier", "B", font_size)
        y = pdf.get_y() + step
        pdf.text(x, y, line(header))
        pdf.line(x, y + 1, x + pdf.epw, y + 1)
        pdf.set_y(y + 1.2)
        pdf.set_font("Courier", "", font_size)

    draw_header()
    empty = True
    for values in rows:
        empty = False
        y = pdf.get_y() + step
        if y > bottom:
            pdf.add_page()
            draw_header()
            y = pdf.get_y() + step
        pdf.text(x, y, line(values))
        pdf.set_y(y + 0.6)
    if empty:
        pdf.text(x, pdf.get_y() + step, "(none)")
        pdf.set_y(pdf.get_y() + step + 0.6)
    pdf.ln(1)
    pdf.set_font("Helvetica", "", 9)


def _by(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[str, str, str]]:
    requests: dict[str, int] = {}
    disclosed: dict[str, int] = {}
    for row in rows:
        name = row[key] or "-"
        requests[name] = requests.get(name, 0) + row["count"]
        if row["outcome"] == "disclosed":
            disclosed[name] = disclosed.get(name, 0) + row["count"]
    return [(k, str(requests[k]), str(disclosed.get(k, 0))) for k in sorted(requests)]


def _by_day(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    days: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = days.setdefault(row["day"], dict.fromkeys(OUTCOME_KEYS, 0))
        counts["requests"] += row["count"]
        if row["outcome"] in counts:
            counts[row["outcome"]] += row["count"]
    return [(day, *(str(days[day][k]) for k in OUTCOME_KEYS)) for day in sorted(days)]


def _by_reason(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["outcome"] or "-", row["reason"] or "-")
        counts[key] = counts.get(key, 0) + row["count"]
    return [(o, r, str(n)) for (o, r), n in sorted(counts.items())]


# -- documents that carry their own JSON (transparency report, order impact list) --------


def table_csv(
    header: Sequence[str], rows: Iterable[Sequence[Any]], doc: Mapping[str, Any]
) -> bytes:
    """A CSV table, then a blank line and ``# report,<the document's RFC 8785 JSON>``:
    the table for people, the last line for :func:`embedded_document`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    writer.writerow([])
    writer.writerow(["# report", to_json(doc).decode()])
    return out.getvalue().encode()


def render_table_document(
    doc: Mapping[str, Any],
    fmt: str,
    *,
    table: str,
    header: Sequence[str],
    pdf: Callable[[Mapping[str, Any]], bytes],
) -> bytes:
    """A signed document's three renderings: its RFC 8785 JSON, :func:`table_csv` of
    the entries ``doc[table]`` (their ``header`` keys, in that order), or the PDF ``pdf``
    draws (which attaches the JSON)."""
    if fmt == "json":
        return to_json(doc)
    if fmt == "csv":
        return table_csv(header, ([entry[k] for k in header] for entry in doc[table]), doc)
    if fmt == "pdf":
        return pdf(doc)
    raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")


def titled_pdf(title: str, heading: str, *, orientation: str = "portrait") -> Any:
    """A new A4 PDF whose bytes depend on what is drawn only (fixed creation date), its
    first page begun with ``heading`` in large type, body type (10 pt) selected."""
    pdf = FPDF(orientation=orientation, unit="mm", format="A4")
    pdf.set_creation_date(datetime(2000, 1, 1, tzinfo=UTC))
    pdf.set_title(title)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    return pdf


def with_attachment(pdf: Any, doc: Mapping[str, Any], desc: str) -> bytes:
    """The PDF's bytes with ``doc`` attached as :data:`PDF_ATTACHMENT` (RFC 8785 JSON),
    which :func:`embedded_document` reads back."""
    pdf.embed_file(
        bytes=to_json(doc),
        basename=PDF_ATTACHMENT,
        mime_type="application/json",
        desc=desc,
        compress=True,
    )
    return bytes(pdf.output())


def embedded_document(data: bytes, kind: str, what: str) -> dict[str, Any]:
    """The JSON document of ``kind`` in any of its renderings: JSON itself, the last line
    of :func:`table_csv`, or a PDF's ``report.json`` attachment; else
    :class:`UsageError` ``not <what>``."""
    if data.startswith(b"%PDF-"):
        payload = _embedded_json(data)
        if payload is None:
            raise UsageError(f"PDF has no embedded {PDF_ATTACHMENT}")
        data = payload
    elif not data.lstrip().startswith(b"{"):
        line = data.decode("utf-8", "replace").rstrip().rsplit("\n", 1)[-1]
        rows = list(csv.reader([line]))
        if not rows or len(rows[0]) != 2 or rows[0][0] != "# report":
            raise UsageError(f"not {what}")
        data = rows[0][1].encode()
    try:
        doc = json.loads(data)
    except ValueError:
        raise UsageError(f"not {what}") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise UsageError(f"not {what}")
    return doc


# -- dispatch -----------------------------------------------------------------------------


def render(report: Mapping[str, Any], fmt: str) -> bytes:
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "pdf":
        return to_pdf(report)
    raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")


def detect_format(data: bytes) -> str:
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"{"):
        return "json"
    return "csv"


def parse(data: bytes, fmt: str | None = None) -> Report:
    fmt = fmt or detect_format(data)
    if fmt == "json":
        return from_json(data)
    if fmt == "csv":
        return from_csv(data)
    if fmt == "pdf":
        return from_pdf(data)
    raise UsageError(f"unknown report format {fmt!r} (json, csv or pdf)")
