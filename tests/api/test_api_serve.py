"""`taxaddr serve` as its own process: it starts, answers over mTLS and logs JSON lines."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx

from tests.api.apikit import (
    JANE,
    SEEDED_SECRETS,
    Identity,
    World,
    body,
    serve_command,
)
from tests.pg import free_port


def test_serve_process_answers_and_logs_json(world: World, agent: Identity) -> None:
    port = free_port()
    command, env = serve_command(world, port)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=agent.ssl_context(), timeout=10) as client:
            for _ in range(150):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            refused = client.post(
                "/v1/disclosures", json=body(world.case(), JANE, reason="immigration enforcement")
            )
        assert refused.status_code == 403
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    requests = [e for e in lines if e.get("event") == "request"]
    refusal = next(e for e in requests if e.get("route") == "/v1/disclosures")
    assert refusal["status"] == 403
    assert refusal["code"] == "reason_insufficient"
    assert refusal["requester_id"] == agent.id
    assert refusal["outcome"] == "denied"
    assert isinstance(refusal["leaf_index"], int)
    text = stderr.decode().upper()
    assert [s for s in SEEDED_SECRETS if s.upper() in text] == []


def test_a_single_process_serve_holds_its_port_too(world: World, agent: Identity) -> None:
    port = free_port()
    command, env = serve_command(world, port, TAXADDR_WORKERS="1")
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=agent.ssl_context(), timeout=10) as client:
            for _ in range(150):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            second = subprocess.run(
                serve_command(world, port, TAXADDR_WORKERS="2")[0],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1
            assert second.stderr.decode().strip().splitlines() == [
                f"taxaddr: config_invalid: port {port} is already served by another taxaddr serve"
            ]
            assert client.get("/healthz").status_code == 200  # the first serves on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
