"""Property-based fuzzing of the served OpenAPI schema with a valid client certificate: no 5xx."""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.apikit import Identity, RunningServer


def _fuzz(op: Any, session: requests.Session, base_url: str, examples: int) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def check(case: Any) -> None:
        response = case.call(
            base_url=base_url, session=session, verify=session.verify, cert=session.cert, timeout=30
        )
        if response.status_code >= 500:
            failures.append(f"{op.method.upper()} {op.path}: {response.status_code}")
            return
        if response.status_code >= 400:  # every refusal uses the contract's envelope
            assert set(response.json()["error"]) == {"code", "message", "request_id"}

    check()
    return failures


def test_no_server_errors_anywhere_in_the_schema(
    server: RunningServer, agent: Identity, overseer: Identity
) -> None:
    with server.client(agent) as client:
        raw = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/disclosures" for op in operations)
    failures: list[str] = []
    for ident in (agent, overseer):
        session = requests.Session()
        session.cert = (str(ident.cert), str(ident.key))
        session.verify = str(ident.ca)
        for op in operations:
            examples = 60 if op.path == "/v1/disclosures" else 15
            failures += _fuzz(op, session, server.base_url, examples)
    assert failures == []
