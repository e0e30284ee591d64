"""Witnessed checkpoints and offline proofs, end to end: the server sends its checkpoints
to two real witness processes, serves the cosigned checkpoint, and an offline proof that
`taxaddr audit verify-proof` accepts with a quorum of 2. A rewritten, re-signed history
is refused by the witnesses that cosigned the old one, and its proof fails the quorum."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from sqlalchemy.orm import Session

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import Checkpoint, sign_checkpoint
from taxaddr.audit.cosignature import CosignerKey
from taxaddr.audit.service import audit_verifier, get_entries, verifier_key
from taxaddr.audit.witnessing import WitnessClient, parse_witnesses
from taxaddr.config import Settings
from tests.api.apikit import (
    JANE,
    JOHN,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    engine_for,
    run_server,
)
from tests.pg import free_port

CLI = [sys.executable, "-c", "from taxaddr.cli import main; main()"]


def _witness(root: Path, name: str, log_vkey: str) -> tuple[subprocess.Popen[bytes], str, str]:
    key = CosignerKey.generate(name)
    (root / f"{name}.key").write_text(key.private_text())
    port = free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "witness",
            "serve",
            "--key",
            f"{name}.key",
            "--log-vkey",
            log_vkey,
            "--state",
            f"{name}.state",
            "--port",
            str(port),
        ],
        cwd=root,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/add-checkpoint", timeout=1)
            return proc, url, key.cosigner.vkey()
        except httpx.TransportError:
            assert time.monotonic() < deadline, "witness did not start"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("witnessed")
    world = build_world(root / "world")
    log_vkey = verifier_key(world.keystore, world.settings)
    procs, config = [], []
    for name in ("tigta.example/w1", "court.example/w2"):
        proc, url, vkey = _witness(root, name.replace("/", "_"), log_vkey)
        procs.append(proc)
        config.append({"vkey": vkey, "url": url})
    settings = world.settings.model_copy(
        update={"witnesses": json.dumps(config), "witness_quorum": 2, "checkpoint_interval": 0.2}
    )
    world.settings = settings
    world.identity("agent-1")
    world.identity("agent-2")
    world.identity("overseer", role="oversight", agency="TIGTA")
    try:
        with run_server(world, settings) as server:
            yield {
                "world": world,
                "server": server,
                "log_vkey": log_vkey,
                "witnesses": config,
                "root": root,
            }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        cleanup()


def _proof(server: RunningServer, world: World, who: str, disclosure_id: str) -> httpx.Response:
    with server.client(world.identities[who]) as client:
        return client.get(f"/v1/audit/proof/disclosure/{disclosure_id}")


def _verify(root: Path, proof: dict[str, Any], log_vkey: str, witnesses: list[str], quorum: int):
    path = root / "proof.json"
    path.write_text(json.dumps(proof))
    args = [*CLI, "audit", "verify-proof", str(path), "--log-vkey", log_vkey]
    for vkey in witnesses:
        args += ["--witness-vkey", vkey]
    return subprocess.run(
        [*args, "--quorum", str(quorum)], capture_output=True, text=True, timeout=60, check=False
    )


def _wait_for_proof(server: RunningServer, world: World, disclosure_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        answer = _proof(server, world, "overseer", disclosure_id)
        if answer.status_code == 200:
            return dict(answer.json())
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "witness_quorum_pending"
        assert time.monotonic() < deadline, "the witnesses never cosigned"
        time.sleep(0.2)


def test_a_disclosure_gets_a_witnessed_offline_proof(witnessed: dict[str, Any]) -> None:
    world, server = witnessed["world"], witnessed["server"]
    agent = world.identities["agent-1"]
    with server.client(agent) as client:
        answer = client.post("/v1/disclosures", json=body(world.case(), JANE))
    assert answer.status_code == 200, answer.text
    disclosure_id = answer.json()["disclosure_id"]
    proof = _wait_for_proof(server, world, disclosure_id)
    assert proof["leaf_index"] == answer.json()["audit"]["leaf_index"]
    assert proof["leaf"]["outcome"] == "disclosed"
    note = proof["checkpoint_note"]
    assert note.count("\u2014 ") == 3  # the log and two witnesses
    # the receiving requester may fetch it too; another requester may not learn it exists
    assert _proof(server, world, "agent-1", disclosure_id).status_code == 200
    assert _proof(server, world, "agent-2", disclosure_id).status_code == 404
    unknown = "00000000-0000-4000-8000-000000000000"
    assert _proof(server, world, "overseer", unknown).status_code == 404

    vkeys = [w["vkey"] for w in witnessed["witnesses"]]
    ok = _verify(witnessed["root"], proof, witnessed["log_vkey"], vkeys, 2)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: leaf {proof['leaf_index']} is included")
    tampered = {**proof, "leaf": {**proof["leaf"], "agency": "FBI"}}
    bad = _verify(witnessed["root"], tampered, witnessed["log_vkey"], vkeys, 2)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1
    assert "not included" in bad.stderr
    # the served checkpoint carries the cosignatures as well
    with server.client(world.identities["overseer"]) as client:
        served = client.get("/v1/audit/checkpoint").text
    assert served.count("\u2014 ") >= 3


def test_a_rewritten_history_is_refused_and_its_proof_fails_the_quorum(
    witnessed: dict[str, Any],
) -> None:
    world, server = witnessed["world"], witnessed["server"]
    with server.client(world.identities["agent-1"]) as client:
        answer = client.post("/v1/disclosures", json=body(world.case(), JOHN))
    assert answer.status_code == 200
    proof = _wait_for_proof(server, world, answer.json()["disclosure_id"])
    size = int(proof["checkpoint_note"].split("\n")[1])

    # The operator rewrites leaf 'index' in its database and re-signs the new history.
    settings: Settings = world.settings
    with Session(engine_for(settings)) as session:
        leaves = [e["leaf"] for e in get_entries(session, 0, size)]
    index = proof["leaf_index"]
    leaves[index] = {**leaves[index], "agency": "NOBODY"}
    hashes = [merkle.leaf_hash(rfc8785.dumps(leaf)) for leaf in leaves]
    forged_root = merkle.root(hashes)
    signing_key = world.keystore.audit_signing_key()
    forged_note = sign_checkpoint(
        Checkpoint(settings.audit_origin, size, forged_root), signing_key, settings.audit_origin
    )
    # It verifies under the log's key: only the witnesses can tell.
    from taxaddr.audit.checkpoint import open_checkpoint

    open_checkpoint(forged_note, audit_verifier(world.keystore, settings), settings.audit_origin)
    client = WitnessClient(parse_witnesses(json.dumps(witnessed["witnesses"])))
    try:
        for endpoint in client.endpoints:
            got = client.cosign(endpoint, forged_note, lambda _old: [])
            assert got is None  # each witness cosigned the true checkpoint of this size: 409
            direct = httpx.post(
                endpoint.url + "/add-checkpoint",
                content=f"old {size}\n\n{forged_note}".encode(),
                timeout=5,
            )
            assert direct.status_code == 409
    finally:
        client.close()

    forged_proof = {
        "leaf": leaves[index],
        "leaf_index": index,
        "checkpoint_note": forged_note,
        "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(hashes, index, size)],
    }
    vkeys = [w["vkey"] for w in witnessed["witnesses"]]
    refused = _verify(witnessed["root"], forged_proof, witnessed["log_vkey"], vkeys, 2)
    assert refused.returncode != 0
    assert "cosigned by 0 of the given witnesses, 2 required" in refused.stderr
    # without witnesses the forgery would pass: the quorum is what protects the reader
    assert _verify(witnessed["root"], forged_proof, witnessed["log_vkey"], [], 0).returncode == 0


def test_verify_proof_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text("not json")
    log_vkey = "taxaddr.local/audit+00000000+AQ=="
    command = [*CLI, "audit", "verify-proof", "p.json", "--log-vkey", log_vkey]
    bad_key = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad_key.returncode != 0
    assert bad_key.stderr.count("\n") == 1
    assert "Traceback" not in bad_key.stderr
