"""The served OpenAPI document against the real server: schemathesis, every check, every role.

The ``st`` CLI (a real external client, over mTLS with each identity's certificate)
runs its examples, coverage and fuzzing phases on every operation of the document
with ``--checks all``: no server errors, every status and content type documented,
responses matching their schemas (the error envelope with exactly its three keys),
schema-valid requests accepted and invalid ones refused, 405 with ``Allow`` for
undeclared methods, required parameters really required. Rules between two query
parameters that OpenAPI cannot state are taught to it by ``tests/api/st_hooks.py``.
For a requester most operations answer 403 and for an overseer the disclosure
endpoint does: the document must say so, which is what the per-role runs check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.apikit import REPO, Identity, RunningServer, World

ST = Path(sys.executable).parent / "st"
EXAMPLES = 25
ROLES = ("agent-1", "overseer", "prometheus")  # requester, oversight, monitor


def _schema(server: RunningServer, ident: Identity, out: Path) -> dict[str, object]:
    with server.client(ident) as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    out.write_bytes(answer.content)
    document: dict[str, object] = answer.json()
    return document


@pytest.mark.parametrize("identity_id", ROLES)
def test_schemathesis_all_checks_pass_for_each_role(
    server: RunningServer, world: World, identity_id: str, tmp_path: Path
) -> None:
    ident = world.identities[identity_id]
    document = _schema(server, ident, tmp_path / "openapi.json")
    paths = document["paths"]
    assert isinstance(paths, dict)
    operations = sum(len(methods) for methods in paths.values())
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.st_hooks",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NO_COLOR": "1",
    }
    command = [
        str(ST),
        "run",
        str(tmp_path / "openapi.json"),
        "--url",
        server.base_url,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "16",
        "--workers",
        "1",
        "--no-shrink",
        "--request-cert",
        str(ident.cert),
        "--request-cert-key",
        str(ident.key),
        "--tls-verify",
        str(ident.ca),
    ]
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None, output[-2000:]
    assert int(tested.group(1)) == operations  # every operation, none skipped
    assert re.search(r"\d+ generated, \d+ passed", output), output[-2000:]


def test_document_states_every_refusal_of_an_identified_operation(
    server: RunningServer, overseer: Identity, tmp_path: Path
) -> None:
    document = _schema(server, overseer, tmp_path / "openapi.json")
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path, methods in paths.items():
        for method, operation in methods.items():
            statuses = set(operation["responses"])
            assert {"413", "429", "431"} <= statuses, (method, path)
            if path not in {"/healthz", "/readyz"}:  # any certificate; no identity lookup
                assert {"403", "503"} <= statuses, (method, path)
            for status in {s for s in statuses if not s.startswith("2")}:  # errors
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
    summary = {p["name"]: p for p in paths["/v1/oversight/summary"]["get"]["parameters"]}
    assert summary["from"]["required"] is True
    assert summary["to"]["required"] is True
    assert "HTTPValidationError" not in json.dumps(document)
    assert document["security"] == [{"mTLS": []}]
