"""Refused requests leak nothing: no seeded TIN, name or address in answers, logs or metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY, generate_latest

from taxaddr.api.logs import JsonFormatter
from tests.api.apikit import (
    AMBIGUOUS,
    JANE,
    SEEDED_SECRETS,
    UNKNOWN,
    Identity,
    RunningServer,
    World,
    body,
    forge_case,
)


def _refused_payloads(world: World) -> list[dict[str, object]]:
    case = world.case()
    return [
        body(world.case(proceeding="civil")),
        body(world.case(agency="FBI")),
        body(case, reason="immigration enforcement"),
        body(case, tax_periods=["2019"]),
        body(forge_case(world, claims={"aud": "elsewhere"})),
        body("not-a-token"),
        body(case, UNKNOWN, tax_periods=["2023", "2024"]),
        body(case, AMBIGUOUS, tax_periods=["2023", "2024"]),
        body(case, {"tin": JANE["tin"], "name": "JANE X DOE"}),
        body(case, {"tin": "212-55-12345", "name": JANE["name"]}),
        body(case, {"tin": JANE["tin"], "name": "JANE 2 DOE"}),
        {**body(case), "subject": {"tin": JANE["tin"], "name": JANE["name"], "extra": "x"}},
    ]


def test_refusals_leak_no_personal_data(
    server: RunningServer,
    world: World,
    agent: Identity,
    overseer: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with server.client(agent) as client:
        for payload in _refused_payloads(world):
            r = client.post("/v1/disclosures", json=payload)
            assert r.status_code in (403, 404, 422), r.text
            texts.append(r.text)
            texts.extend(f"{k}: {v}" for k, v in r.headers.items())
        replay = body(world.case())
        assert client.post("/v1/disclosures", json=replay).status_code == 200
        r = client.post("/v1/disclosures", json=replay)
        assert r.status_code == 409
        texts.append(r.text)
    with server.client(overseer) as client:
        r = client.post("/v1/disclosures", json=body(world.case()))
        assert r.status_code == 403
        texts.append(r.text)
        entries = client.get("/v1/audit/entries", params={"start": 0, "end": 1000})
        texts.append(entries.text)  # the audit log holds pseudonyms only
    formatter = JsonFormatter()
    logs = [formatter.format(rec) for rec in caplog.records]
    assert any('"event":"request"' in line for line in logs)  # the logs were captured
    texts.append(generate_latest(REGISTRY).decode())
    haystack = "\n".join(texts + logs).upper()
    leaked = [secret for secret in SEEDED_SECRETS if secret.upper() in haystack]
    assert leaked == []
    assert "1:26-CR-00123" not in generate_latest(REGISTRY).decode().upper()
