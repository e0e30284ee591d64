"""What the oversight dashboard shows, computed without any HTTP or HTML.

Everything here is a count by day, agency, statute, outcome or reason code, the
per-case quota table and the audit log's checkpoint; never a subject pseudonym,
TIN, name or address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from taxaddr.audit import admin, queries
from taxaddr.audit.summary import summarize
from taxaddr.cases.orders import list_orders
from taxaddr.oversight import charts
from taxaddr.oversight.verification import VerificationResult

DEFAULT_DAYS = 30
# The code a request without a policy reason was answered with, by outcome.
_OUTCOME_CODE = {"no_match": "no_unique_match", "denied": "denied", "error": "error"}
NEAR_QUOTA = 0.8
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class GroupCounts:
    """Requests by outcome for one group: an agency, a statute or a day (``name``)."""

    name: str
    requests: int
    disclosed: int
    denied: int
    no_match: int
    error: int

    @classmethod
    def of(cls, name: str, counts: Mapping[str, int]) -> GroupCounts:
        return cls(
            name,
            sum(counts.values()),
            counts["disclosed"],
            counts["denied"],
            counts["no_match"],
            counts["error"],
        )

    @property
    def day(self) -> str:
        """The day a per-day group stands for (its name)."""
        return self.name


@dataclass(frozen=True)
class CaseQuota:
    number: str
    court: str
    used: int
    quota: int

    @property
    def percent(self) -> int:
        return 100 if self.quota <= 0 else min(100, round(100 * self.used / self.quota))

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.used)


@dataclass(frozen=True)
class CheckpointView:
    tree_size: int
    root_hash: str
    note: str
    verification: VerificationResult | None


@dataclass
class DashboardView:
    period_from: str
    period_to: str
    generated_at: str
    totals: dict[str, int]
    days: list[GroupCounts]
    agencies: list[GroupCounts]
    statutes: list[GroupCounts]
    reasons: list[tuple[str, int]]
    cases_near_quota: list[CaseQuota]
    cases_total: int
    checkpoint: CheckpointView
    trust_changes: list[admin.TrustChange] = field(default_factory=list)
    policy_history: list[admin.PolicyVersionInfo] = field(default_factory=list)
    accounting_lookups: int = 0  # taxpayer-accounting leaves in the period
    orders: list[dict[str, Any]] = field(default_factory=list)  # every applied court order

    @property
    def orders_in_force(self) -> int:
        return sum(1 for order in self.orders if order["in_force"])

    charts: dict[str, Markup] = field(default_factory=dict)


def default_period(today: date | None = None) -> tuple[date, date]:
    end = today or datetime.now(UTC).date()
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def _tally(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, dict[str, int]]:
    """Counts by outcome per value of ``key`` (an empty value is ``(none)``)."""
    acc: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = acc.setdefault(row[key] or "(none)", dict.fromkeys(queries.OUTCOMES, 0))
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + row["count"]
    return acc


def _group(rows: Iterable[Mapping[str, Any]], key: str) -> list[GroupCounts]:
    out = [GroupCounts.of(name, c) for name, c in _tally(rows, key).items()]
    return sorted(out, key=lambda g: (-g.requests, g.name))


def _days(from_day: date, to_day: date, rows: Iterable[Mapping[str, Any]]) -> list[GroupCounts]:
    """One group per day of the period, days without requests included."""
    acc = _tally(rows, "day")
    none = dict.fromkeys(queries.OUTCOMES, 0)
    out = []
    # Counted, not stepped past ``to_day``: the day after 9999-12-31 does not exist.
    for offset in range((to_day - from_day).days + 1):
        day = (from_day + timedelta(days=offset)).isoformat()
        out.append(GroupCounts.of(day, acc.get(day, none)))
    return out


def _order_row(order: dict[str, Any]) -> dict[str, Any]:
    """An applied order as the dashboard shows it (times as UTC text)."""

    def utc(ts: int | None) -> str:
        if ts is None:
            return "-"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")

    return {**order, "nbf_text": utc(order["nbf"]), "exp_text": utc(order["exp"])}


def build_view(
    session: Session,
    from_day: date,
    to_day: date,
    *,
    checkpoint: CheckpointView,
    now: datetime | None = None,
) -> DashboardView:
    summary = summarize(session, from_day, to_day)
    rows = summary["rows"]
    reasons: dict[str, int] = {}
    for row in rows:
        if row["outcome"] != "disclosed":
            reason = row["reason"] or _OUTCOME_CODE.get(row["outcome"], row["outcome"])
            reasons[reason] = reasons.get(reason, 0) + row["count"]
    cases = queries.all_case_refs(session)
    near = [
        CaseQuota(c.number, c.court, c.disclosures_used, c.max_disclosures)
        for c in cases
        if c.max_disclosures <= 0 or c.disclosures_used >= NEAR_QUOTA * c.max_disclosures
    ]
    near.sort(key=lambda c: (-c.percent, c.remaining, c.number))
    view = DashboardView(
        period_from=from_day.isoformat(),
        period_to=to_day.isoformat(),
        generated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        totals=summary["totals"],
        days=_days(from_day, to_day, rows),
        agencies=_group(rows, "agency"),
        statutes=_group(rows, "statute"),
        reasons=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        cases_near_quota=near,
        cases_total=len(cases),
        checkpoint=checkpoint,
        trust_changes=admin.trust_changes(session, from_day, to_day),
        policy_history=admin.policy_history(session),
        accounting_lookups=queries.accounting_lookups(session, from_day, to_day),
        orders=[_order_row(o) for o in list_orders(session, now)],
    )
    view.charts = {
        "per_day": charts.daily_bars(
            [d.day for d in view.days],
            {
                "disclosed": [d.disclosed for d in view.days],
                "refused": [d.denied for d in view.days],
                "no unique match": [d.no_match for d in view.days],
            },
            {
                "disclosed": charts.DISCLOSED_COLOR,
                "refused": charts.REFUSED_COLOR,
                "no unique match": charts.NO_MATCH_COLOR,
            },
            title="Disclosures and refusals per day",
        ),
        "agency": charts.horizontal_bars(
            [(g.name, g.disclosed) for g in view.agencies],
            title="Addresses disclosed, by agency",
            color=charts.DISCLOSED_COLOR,
        ),
        "agency_refused": charts.horizontal_bars(
            [(g.name, g.denied) for g in view.agencies],
            title="Requests refused, by agency",
            color=charts.REFUSED_COLOR,
        ),
        "statute": charts.horizontal_bars(
            [(g.name, g.disclosed) for g in view.statutes],
            title="Addresses disclosed, by statute",
            color=charts.DISCLOSED_COLOR,
        ),
        "reasons": charts.horizontal_bars(
            view.reasons, title="Why requests were refused", color=charts.REFUSED_COLOR
        ),
    }
    return view


_ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


# Plain-language meaning of the codes, for readers who are not engineers.
REASON_TEXT: dict[str, str] = {
    "requester_unknown": "the requesting certificate is not registered",
    "requester_revoked": "the requester's registration was revoked",
    "role_forbidden": "the requester's role may not request disclosures",
    "case_reference_malformed": "the case reference could not be read",
    "case_signature_invalid": "the case reference's signature is invalid",
    "case_issuer_untrusted": "the case reference comes from an untrusted issuer",
    "case_algorithm_forbidden": "the case reference uses a forbidden algorithm",
    "case_audience_mismatch": "the case reference was not issued for this service",
    "case_expired": "the case reference has expired",
    "case_not_yet_valid": "the case reference is not valid yet",
    "case_revoked": "the case reference was revoked",
    "proceeding_not_criminal": "the case is not a criminal proceeding",
    "statute_not_criminal": "the statute is not a designated federal criminal statute",
    "statute_not_on_case": "the statute is not named in the case reference",
    "agency_mismatch": "the requester's agency is not the case's agency",
    "requester_not_on_case": "the requester is not named in the case reference",
    "subject_not_on_case": "the taxpayer is not named in the case reference",
    "tax_period_not_covered": "the tax period is not covered by the case reference",
    "reason_insufficient": "the stated reason is missing or boilerplate",
    "address_incomplete": "the request's last known address is incomplete",
    "case_quota_exhausted": "the case reference's disclosure quota is used up",
    "disclosure_stayed": "a court order in force stays disclosures in this scope",
    "requester_caseload_exceeded": "the requester would exceed the personal limit of open cases",
    "requester_volume_exceeded": "the requester would exceed the personal limit of subjects a day",
    "request_replayed": "the request id was already used",
    "no_unique_match": "no single taxpayer record matched",
    "error": "the service failed and disclosed nothing",
}


def render_html(view: DashboardView) -> str:
    return _ENV.get_template("dashboard.html.j2").render(view=view, reason_text=REASON_TEXT)
