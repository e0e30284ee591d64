"""deploy/: the Kubernetes manifests and the compose file are valid against their schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose.yaml"
COMPOSE_SCHEMA = REPO / "deploy" / "schema" / "compose-spec.json"
K8S_VERSION = "1.30.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> dict[str, list[dict[str, Any]]]:
    return {p.name: _documents(p) for p in sorted(K8S.glob("*.yaml"))}


def _compose_errors(document: object) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_every_k8s_manifest_validates_strictly(name: str) -> None:
    for document in _documents(K8S / name):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_k8s_has_the_required_objects() -> None:
    kinds = {d["kind"]: d for docs in _k8s().values() for d in docs}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "Job",
    } <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    api = containers["taxaddr"]
    assert api["readinessProbe"]["exec"]["command"][-1] == "/readyz"
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"] for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"keys", "health"} <= mounts
    assert "secret" in volumes["keys"]
    assert "configMap" in volumes["policy"]
    # the OPA sidecar refuses an unsigned bundle
    assert "--verification-key-id=taxaddr-policy" in containers["opa"]["args"]
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] >= 2


def test_k8s_validation_refuses_an_unknown_field() -> None:
    deployment = _documents(K8S / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_compose_file_validates_against_the_compose_spec() -> None:
    assert _compose_errors(yaml.safe_load(COMPOSE.read_text())) == []


def test_compose_has_the_topology() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    replicas = [n for n in services if n.startswith("taxaddr-")]
    assert len(replicas) == 3
    assert {"postgres", "opa-1", "opa-2", "haproxy", "prometheus", "grafana"} <= set(services)
    for name in replicas:
        assert services[name]["read_only"] is True
        assert services[name]["user"].startswith("10001")
    for name in ("opa-1", "opa-2"):
        assert "--verification-key-id=taxaddr-policy" in services[name]["command"]


def test_compose_schema_refuses_a_misspelt_key() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["haproxy"]["read_onyl"] = True
    errors = _compose_errors(document)
    assert errors
    assert "read_onyl" in errors[0]


def test_haproxy_configs_are_valid(tmp_path: Path) -> None:
    import shutil
    import subprocess

    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy missing: `make sysdeps` installs it")
    for name in ("haproxy.cfg", "opa.cfg"):
        text = (REPO / "deploy" / "haproxy" / name).read_text()
        # container host names do not resolve here: check the syntax with 127.0.0.1
        for host in ("taxaddr-1", "taxaddr-2", "taxaddr-3", "opa-1", "opa-2"):
            text = text.replace(f" {host}:", " 127.0.0.1:")
        cfg = tmp_path / name
        cfg.write_text(text)
        done = subprocess.run(
            check=False,
            args=[binary, "-c", "-f", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
