"""deploy/prometheus and deploy/grafana are valid for the real tools (promtool)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana" / "taxaddr-dashboard.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
CONTRACT_METRICS = {
    "taxaddr_disclosure_requests_total",
    "taxaddr_disclosures_total",
    "taxaddr_policy_decisions_total",
    "taxaddr_policy_evaluation_seconds",
    "taxaddr_disclosure_request_seconds",
    "taxaddr_audit_tree_size",
    "taxaddr_audit_append_failures_total",
    "taxaddr_audit_verification_ok",
    "taxaddr_trust_changes",  # issue 20: trust changes are leaves
    "taxaddr_accounting_lookups_total",  # issue 19: taxpayer accounting
    "taxaddr_orders_in_force",  # issue 19: court orders
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_scrape_config_uses_a_client_certificate(tmp_path: Path) -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "taxaddr"
    assert job["scheme"] == "https"
    tls = job["tls_config"]
    assert {"ca_file", "cert_file", "key_file"} <= set(tls)
    # promtool checks that the certificate files exist: point them at real files.
    for key in ("ca_file", "cert_file", "key_file"):
        path = tmp_path / Path(tls[key]).name
        path.write_text("placeholder\n")
        tls[key] = str(path)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_scrape_config_without_its_client_key_is_refused(tmp_path: Path) -> None:
    """Guards the test above: promtool really looks at the TLS files."""
    shutil.copy(PROM / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode != 0


def test_alert_rules_check() -> None:
    result = promtool("check", "rules", "alerts.yml", cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {
        rule["alert"]
        for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "TaxaddrDisclosureSpike",
        "TaxaddrHighRefusalRate",
        "TaxaddrAuditAppendFailure",
        "TaxaddrPolicyEngineUnavailable",
        "TaxaddrAuditVerificationFailed",
    } <= names


def test_alert_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml", cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_unit_tests_would_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a spike rule that never fires fails them."""
    rules = (PROM / "alerts.yml").read_text().replace("> 20)", "> 20000)")
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(PROM / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "TaxaddrDisclosureSpike" in result.stdout + result.stderr


def _grafana_exprs() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = _grafana_exprs()
    assert len(exprs) >= 10
    # Grafana's $__range is not PromQL; give it a value for promtool.
    rules = {
        "groups": [
            {
                "name": "grafana",
                "rules": [
                    {"record": f"grafana:panel_{i}", "expr": e.replace("$__range", "1d")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "grafana_rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "grafana_rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_and_alerts_use_only_known_metrics() -> None:
    import re

    text = " ".join(_grafana_exprs()) + (PROM / "alerts.yml").read_text()
    used = set(re.findall(r"\btaxaddr_[a-z_]+", text))
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    panels = " ".join(p["title"] for p in json.loads(GRAFANA.read_text())["panels"])
    for word in ("agency", "statute", "Refusal reasons", "tree size", "verification", "accounting"):
        assert word in panels


@pytest.mark.parametrize("name", sorted(CONTRACT_METRICS))
def test_metric_is_registered(name: str) -> None:
    from prometheus_client import REGISTRY

    import taxaddr.metrics  # noqa: F401

    names = {m.name for m in REGISTRY.collect()}
    assert name.removesuffix("_total") in names
