"""A real Prometheus scrapes a running taxaddr over mTLS with the deploy/ scrape config."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.oversight.oversight_e2e import Identity, RunningServer, Script, World, sample
from tests.pg import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DISCLOSED = 'taxaddr_disclosures_total{agency="ICE-HSI",statute="8 U.S.C. 1253(a)(1)"}'

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def _query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        payload = json.load(answer)
    assert payload["status"] == "success"
    return payload["data"]["result"]


def _wait_for(port: int, promql: str, want: float, proc: subprocess.Popen, log: Path) -> list:
    """Poll until the query returns ``want`` (a deadline for waiting, not a timing check)."""
    deadline = time.monotonic() + 90
    result: list = []
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            result = _query(port, promql)
        except OSError:
            result = []
        if result and float(result[0]["value"][1]) == want:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql} never became {want}: {result}\n{log.read_text()[-2000:]}")


@contextmanager
def _run_prometheus(
    tmp_path: Path, server: RunningServer, scraper: Identity, *, rules: bool
) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    """Prometheus with deploy/'s scrape config (1 s intervals) scraping ``server`` with
    ``scraper``'s certificate; with deploy/'s alert rules when ``rules``."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    if rules:
        shutil.copy(REPO / "deploy" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    else:
        config.pop("rule_files")
    (job,) = config["scrape_configs"]
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    job["static_configs"][0]["targets"] = [server.base_url.removeprefix("https://")]
    job["tls_config"].update(
        ca_file=str(scraper.ca), cert_file=str(scraper.cert), key_file=str(scraper.key)
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus(
    tmp_path: Path, server: RunningServer, world: World
) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    with _run_prometheus(tmp_path, server, world.identities["prometheus"], rules=True) as run:
        yield run


def _ice_hsi_disclosures(server: RunningServer, monitor: Identity) -> float:
    """The sum of ``taxaddr_disclosures_total`` for ICE-HSI that the server exposes."""
    with server.client(monitor) as client:
        text = client.get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "taxaddr_disclosures_total" and s.labels.get("agency") == "ICE-HSI"
    )


def test_prometheus_scrapes_disclosure_counts_over_mtls(
    prometheus: tuple[int, subprocess.Popen, Path],
    script: Script,
    server: RunningServer,
    world: World,
) -> None:
    port, proc, log = prometheus
    # The counters are process-wide (every in-process test server of this xdist worker
    # counts into them, and other modules' tests may run between the script and this
    # test): what Prometheus must show is what the server exposes now, which holds at
    # least the script's disclosures.
    exposed = _ice_hsi_disclosures(server, world.identities["prometheus"])
    assert exposed >= sample(script.metrics_before, DISCLOSED) + script.disclosed
    _wait_for(port, 'up{job="taxaddr"}', 1.0, proc, log)
    _wait_for(
        port,
        'sum(taxaddr_disclosures_total{job="taxaddr",agency="ICE-HSI"})',
        exposed,
        proc,
        log,
    )
    by_outcome = {
        r["metric"]["outcome"]: float(r["value"][1])
        for r in _query(port, 'sum by (outcome) (taxaddr_disclosure_requests_total{job="taxaddr"})')
    }
    assert by_outcome["disclosed"] >= script.disclosed
    assert by_outcome["no_match"] >= script.no_match
    assert by_outcome["denied"] >= script.denied
    tree = _query(port, 'taxaddr_audit_tree_size{job="taxaddr"}')
    assert float(tree[0]["value"][1]) == script.leaves
    # The alert rules loaded into the real server and evaluate.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as answer:
        rules = json.load(answer)["data"]["groups"][0]["rules"]
    assert {r["name"] for r in rules} >= {"TaxaddrAuditAppendFailure", "TaxaddrDisclosureSpike"}
    assert all(r["health"] != "err" for r in rules)


def test_scrape_without_the_monitor_certificate_fails(
    tmp_path: Path, server: RunningServer, world: World
) -> None:
    """Guards the test above: the requester's certificate is refused (403), up stays 0."""
    agent = world.identities["agent-1"]
    with _run_prometheus(tmp_path, server, agent, rules=False) as (port, proc, log):
        _wait_for(port, 'up{job="taxaddr"}', 0.0, proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        assert "403" in targets[0]["lastError"]
