"""Oversight endpoints on a real mTLS server after scripted disclosures and refusals."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from taxaddr.api.runtime import engine_for
from taxaddr.reports import document
from taxaddr.reports.compliance import verify_report
from tests.oversight.oversight_e2e import (
    CASE_NUMBER,
    SEEDED_SECRETS,
    Identity,
    RunningServer,
    Script,
    World,
    sample,
)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _get(server: RunningServer, who: Identity, path: str, **params: str):
    with server.client(who) as client:
        return client.get(path, params=params)


def test_summary_counts_the_script(server: RunningServer, world: World, script: Script) -> None:
    answer = _get(
        server,
        world.identities["overseer"],
        "/v1/oversight/summary",
        **{"from": _today(), "to": _today()},
    )
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["totals"] == {
        "requests": script.requests,
        "disclosed": script.disclosed,
        "denied": script.denied,
        "no_match": script.no_match,
        "error": 0,
    }
    assert {r["reason"] for r in summary["rows"] if r["outcome"] == "denied"} == set(script.reasons)
    assert {r["agency"] for r in summary["rows"]} == {"ICE-HSI"}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2026-11-02"}, "request_invalid"),
        ({"from": "2026-11-05", "to": "2026-11-02"}, "request_invalid"),
        ({"from": "yesterday", "to": "2026-11-02"}, "request_invalid"),
    ],
)
def test_summary_refuses_bad_periods(
    server: RunningServer, world: World, params: dict[str, str], code: str
) -> None:
    answer = _get(server, world.identities["overseer"], "/v1/oversight/summary", **params)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize("path", ["/v1/oversight/summary", "/oversight", "/v1/reports/compliance"])
@pytest.mark.parametrize("who", ["agent-1", "prometheus"])
def test_oversight_views_need_the_oversight_role(
    server: RunningServer, world: World, path: str, who: str
) -> None:
    answer = _get(server, world.identities[who], path, **{"from": _today(), "to": _today()})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "role_forbidden"


def test_metrics_for_monitor_and_oversight_only(
    server: RunningServer, world: World, script: Script
) -> None:
    """Counters are process-wide: compare with /metrics just before the script ran."""
    disclosed = 'taxaddr_disclosures_total{agency="ICE-HSI",statute="8 U.S.C. 1253(a)(1)"}'
    no_match = (
        'taxaddr_disclosure_requests_total{agency="ICE-HSI",outcome="no_match",'
        'reason="no_unique_match"}'
    )
    before = script.metrics_before
    for who in ("prometheus", "overseer"):
        after = _get(server, world.identities[who], "/metrics")
        assert after.status_code == 200
        assert after.headers["content-type"].startswith("text/plain")
        assert sample(after.text, disclosed) - sample(before, disclosed) == script.disclosed
        assert sample(after.text, no_match) - sample(before, no_match) == script.no_match
        assert sample(after.text, "taxaddr_audit_tree_size") == script.leaves
    refused = _get(server, world.identities["agent-1"], "/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "role_forbidden"


def test_metrics_hold_no_personal_data_or_case_number(
    server: RunningServer, world: World, script: Script
) -> None:
    text = _get(server, world.identities["prometheus"], "/metrics").text
    for secret in (*SEEDED_SECRETS, CASE_NUMBER, "Quill Street", "Washington"):
        assert secret.lower() not in text.lower(), secret
    # every label value is from a bounded set
    import re

    labels = re.findall(r'(\w+)="([^"]*)"', text)
    allowed_keys = {
        "agency",
        "outcome",
        "reason",
        "statute",
        "engine",
        "result",
        "le",
        "version",
        "implementation",
        "major",
        "minor",
        "patchlevel",
        "generation",
        "action",
    }
    assert {k for k, _ in labels} <= allowed_keys
    from taxaddr.audit.admin import ACTIONS

    assert {v for k, v in labels if k == "action"} == set(ACTIONS)
    outcomes = {v for k, v in labels if k == "outcome"}
    assert outcomes <= {"disclosed", "denied", "no_match", "error", "invalid", "throttled"}


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_signed_report_endpoint(
    server: RunningServer, world: World, script: Script, fmt: str
) -> None:
    answer = _get(
        server,
        world.identities["overseer"],
        "/v1/reports/compliance",
        **{"from": _today(), "to": _today(), "format": fmt},
    )
    assert answer.status_code == 200, answer.text
    signature = answer.headers["x-signature"]
    assert len(base64.b64decode(signature, validate=True)) == 64
    report = document.parse(answer.content)
    assert report["totals"]["disclosed"] == script.disclosed
    assert report["distinct_subjects"] == 2
    assert report["cases"] == [
        {"number": CASE_NUMBER, "court": "D.D.C.", "disclosures": 2, "max_disclosures": 100}
    ]
    with Session(engine_for(world.settings)) as session:
        check = verify_report(session, world.keystore, world.settings, answer.content, signature)
    assert check.ok, check.problems
    blob = answer.content.decode("latin-1").lower()
    for secret in SEEDED_SECRETS:
        assert secret.lower() not in blob


def test_report_endpoint_refuses_unknown_format(server: RunningServer, world: World) -> None:
    answer = _get(
        server,
        world.identities["overseer"],
        "/v1/reports/compliance",
        **{"from": _today(), "to": _today(), "format": "xlsx"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "request_invalid"


def test_dashboard_html(server: RunningServer, world: World, script: Script) -> None:
    answer = _get(server, world.identities["overseer"], "/oversight")
    assert answer.status_code == 200
    html = answer.text
    assert f'data-total="requests">{script.requests}<' in html
    assert f'data-total="disclosed">{script.disclosed}<' in html
    assert html.count("<svg") >= 5
    assert "verified" in html
    assert "<script" not in html
    for secret in SEEDED_SECRETS:
        assert secret.lower() not in html.lower()


def test_metrics_still_served_when_the_database_fails(
    server: RunningServer, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metrics that report a broken store must not disappear with it."""
    from taxaddr.api.routes import oversight as routes
    from taxaddr.errors import DatabaseUnavailable

    def broken(_session: object) -> None:
        raise DatabaseUnavailable("database unavailable")

    monkeypatch.setattr(routes, "read_head", broken)
    answer = _get(server, world.identities["prometheus"], "/metrics")
    assert answer.status_code == 200
    assert "taxaddr_audit_append_failures_total" in answer.text
