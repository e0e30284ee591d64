"""Taxpayer accounting (§ 6103(p)(3)(A)) end to end over mTLS, and its CLI.

The inclusion proofs and the checkpoint signature are checked by a verifier written
here from RFC 6962 (section 2.1.1) and C2SP signed-note, with hashlib and the Ed25519
primitive only: not the service's own merkle/checkpoint code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from taxaddr.api.logs import JsonFormatter
from taxaddr.cli import run
from taxaddr.config import get_settings
from taxaddr.reports import signing
from tests.api.apikit import (
    JANE,
    JOHN,
    UNKNOWN,
    Identity,
    RunningServer,
    World,
    body,
    build_world,
    leaves,
    run_server,
    tree_size,
)

REASON = "Taxpayer wrote on 2026-11-30 asking whether and why her address was disclosed."
CASES = ("1:26-cr-00501", "2:26-cr-00777", "3:26-cr-00912")

# -- an independent RFC 6962 / signed-note verifier ----------------------------------


def _leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc6962_root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 6962 2.1.1: PATH(m, D[n]) for k the largest power of two < n: m < k goes
    left (sibling: MTH(D[k:n])), else right (sibling: MTH(D[0:k])). Recursion written
    out from the top: find the split sequence, then fold the path bottom-up."""
    sides: list[bool] = []  # True: our subtree is the left child at that level
    lo, n = index, size
    while n > 1:
        k = 1
        while k * 2 < n:
            k *= 2
        if lo < k:
            sides.append(True)
            n = k
        else:
            sides.append(False)
            lo, n = lo - k, n - k
    assert len(sides) == len(path), "audit path length does not fit the tree"
    h = leaf
    for left, sibling in zip(reversed(sides), path, strict=True):
        h = _node(h, sibling) if left else _node(sibling, h)
    return h


def verify_note(note: str, vkey: str) -> tuple[int, bytes]:
    """C2SP signed-note: the body up to the blank line, signed by the vkey's Ed25519 key."""
    name, key_hash_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 0x01
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    body_text, _, sigs = note.partition("\n\n")
    body_bytes = (body_text + "\n").encode()
    ok = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 " + name + " "):
            continue
        blob = base64.b64decode(line.rsplit(" ", 1)[1])
        if blob[:4].hex() == key_hash_hex:
            public.verify(blob[4:], body_bytes)  # raises if it does not verify
            ok = True
    assert ok, "no signature line of the log's key"
    lines = body_text.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])


# -- the world: JANE disclosed under three cases, refused twice; JOHN disclosed once ---


@pytest.fixture(scope="module")
def officer(world: World) -> Identity:
    return world.identity("do-officer", role="disclosure_officer", agency="IRS-DO")


@pytest.fixture(scope="module")
def history(server: RunningServer, world: World, agent: Identity) -> dict[str, Any]:
    disclosed: list[str] = []
    refused: list[int] = []
    with server.client(agent) as client:
        for number in CASES:
            r = client.post("/v1/disclosures", json=body(world.case(number=number)))
            assert r.status_code == 200, r.text
            disclosed.append(r.json()["disclosure_id"])
        for payload in (
            body(world.case(number=CASES[0]), reason="immigration enforcement"),
            body(world.case(number=CASES[1], proceeding="civil")),
        ):
            before = tree_size(world)
            r = client.post("/v1/disclosures", json=payload)
            assert r.status_code == 403, r.text
            refused.append(before)
        r = client.post("/v1/disclosures", json=body(world.case(number="9:26-cr-00001"), JOHN))
        assert r.status_code == 200, r.text
        john = r.json()["disclosure_id"]
    return {"disclosed": disclosed, "refused": refused, "john": john}


def lookup(
    server: RunningServer, ident: Identity, person: dict[str, str], **extra: Any
) -> httpx.Response:
    payload = {
        "request_id": str(uuid.uuid4()),
        "subject": {"tin": person["tin"], "name": person["name"]},
        "reason": REASON,
        **extra,
    }
    with server.client(ident) as client:
        return client.post("/v1/accounting/subject", json=payload)


def keys(server: RunningServer, ident: Identity) -> dict[str, Any]:
    with server.client(ident) as client:
        r = client.get("/v1/keys")
    assert r.status_code == 200
    return dict(r.json())


def test_accounting_lists_every_disclosure_with_independently_verified_proofs(
    server: RunningServer,
    world: World,
    officer: Identity,
    overseer: Identity,
    history: dict[str, Any],
) -> None:
    before = tree_size(world)
    r = lookup(server, officer, JANE)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"disclosures", "checkpoint", "audit"}
    entries = answer["disclosures"]
    # the three disclosures, not the refusals, not JOHN's
    assert [e["disclosure_id"] for e in entries] == history["disclosed"]
    assert [e["case_number"] for e in entries] == list(CASES)
    assert history["john"] not in r.text
    assert "9:26-cr-00001" not in r.text
    for entry in entries:
        assert set(entry) == {
            "disclosure_id", "time", "agency", "requester_id", "case_number", "court",
            "statute", "reason", "tax_periods", "leaf_index", "leaf_hash", "inclusion_proof",
        }  # fmt: skip
        assert entry["requester_id"] == "agent-1"
        assert entry["agency"] == "ICE-HSI"
        assert entry["tax_periods"] == ["2024"]
        assert entry["leaf_index"] not in history["refused"]
    assert "1401 Quill" not in r.text  # the address itself is not repeated

    # the lookup is one leaf: outcome accounting, the officer, no TIN or name
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "accounting"
    assert leaf["requester_id"] == "do-officer"
    assert leaf["index"] == answer["audit"]["leaf_index"]
    text = json.dumps(leaf)
    assert JANE["tin"] not in text
    assert JANE["tin"].replace("-", "") not in text
    assert "JANE" not in text.upper()
    assert "Doe" not in text

    # independent verification against the signed checkpoint the answer cites
    size, root = verify_note(answer["checkpoint"]["note"], keys(server, officer)["audit_vkey"])
    assert size == answer["checkpoint"]["tree_size"] >= answer["audit"]["tree_size"]
    assert root.hex() == answer["checkpoint"]["root_hash"]
    with server.client(overseer) as client:
        for entry in entries:
            got = client.get(
                "/v1/audit/entries",
                params={"start": entry["leaf_index"], "end": entry["leaf_index"] + 1},
            ).json()["entries"][0]["leaf"]
            assert got["outcome"] == "disclosed"
            lh = _leaf_hash(rfc8785.dumps(got))
            assert lh.hex() == entry["leaf_hash"]
            path = [bytes.fromhex(h) for h in entry["inclusion_proof"]]
            assert rfc6962_root_from_path(entry["leaf_index"], size, lh, path) == root
            # a tampered proof does not verify
            if path:
                bad = [bytes(32), *path[1:]]
                assert rfc6962_root_from_path(entry["leaf_index"], size, lh, bad) != root


def test_another_taxpayer_sees_only_their_own(
    server: RunningServer, officer: Identity, history: dict[str, Any]
) -> None:
    r = lookup(server, officer, JOHN)
    assert r.status_code == 200
    assert [e["disclosure_id"] for e in r.json()["disclosures"]] == [history["john"]]
    assert not set(history["disclosed"]) & set(r.text.split('"'))


def test_unknown_tin_is_an_empty_list_of_the_same_shape(
    server: RunningServer, world: World, officer: Identity
) -> None:
    before = tree_size(world)
    r = lookup(server, officer, UNKNOWN)
    assert r.status_code == 200
    answer = r.json()
    assert answer["disclosures"] == []
    assert set(answer) == {"disclosures", "checkpoint", "audit"}
    assert set(answer["checkpoint"]) == {"tree_size", "root_hash", "note"}
    assert tree_size(world) == before + 1


def test_a_name_not_the_stored_name_is_404_and_still_one_leaf(
    server: RunningServer, world: World, officer: Identity, history: dict[str, Any]
) -> None:
    before = tree_size(world)
    r = lookup(server, officer, {"tin": JANE["tin"], "name": "JANE X DOE"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "no_unique_match"
    assert history["disclosed"][0] not in r.text
    assert tree_size(world) == before + 1
    (leaf,) = leaves(world, before, before + 1)
    assert leaf["outcome"] == "accounting"
    assert leaf["reason_codes"] == ["no_unique_match"]


def test_a_short_reason_is_422_without_a_leaf(
    server: RunningServer, world: World, officer: Identity
) -> None:
    before = tree_size(world)
    r = lookup(server, officer, JANE, reason="  the taxpayer asked  ")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "request_invalid"
    assert JANE["tin"] not in r.text
    assert tree_size(world) == before


@pytest.mark.parametrize("who", ["agent-1", "overseer", "root-admin"])
def test_only_the_disclosure_officer_role_may_look_up(
    server: RunningServer, world: World, who: str
) -> None:
    r = lookup(server, world.identities[who], JANE)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "role_forbidden"


def test_lookups_are_counted_without_personal_labels(
    server: RunningServer, officer: Identity, monitor: Identity, history: dict[str, Any]
) -> None:
    assert lookup(server, officer, JANE).status_code == 200
    with server.client(monitor) as client:
        text = client.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("taxaddr_accounting_lookups_total")]
    assert any('result="listed"' in ln for ln in lines)
    assert all(JANE["tin"] not in ln and "JANE" not in ln.upper() for ln in lines)


def test_cli_writes_signed_json_and_a_letter_to_the_taxpayer(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    history: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAXADDR_ENV", "test")
    monkeypatch.setenv("TAXADDR_KEYS_DIR", str(world.keys_dir))
    monkeypatch.setenv("TAXADDR_DATABASE_URL", world.settings.database_url)
    monkeypatch.setenv("TAXADDR_POLICY_DIR", str(world.settings.policy_dir))
    get_settings.cache_clear()
    try:
        base = ["accounting", "subject", "--tin", JANE["tin"], "--name", JANE["name"]]
        out_json, out_pdf = tmp_path / "jane.json", tmp_path / "jane.pdf"
        before = tree_size(world)
        assert run([*base, "--reason", REASON, "--format", "json", "--out", str(out_json)]) == 0
        assert run([*base, "--reason", REASON, "--format", "pdf", "--out", str(out_pdf)]) == 0
        assert tree_size(world) == before + 2
        public = world.keystore.report_signing_key().public_key()
        for out in (out_json, out_pdf):
            sig = (out.parent / (out.name + ".sig")).read_text()
            assert signing.verify(out.read_bytes(), sig, public)
            assert not signing.verify(out.read_bytes() + b" ", sig, public)
        answer = json.loads(out_json.read_text())
        assert [e["disclosure_id"] for e in answer["disclosures"]] == history["disclosed"]
        assert "JANE" not in out_json.read_text().upper()  # the JSON holds no name
        letter = subprocess.run(
            ["pdftotext", str(out_pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Jane Q Doe" in letter  # the taxpayer's own name: the letter is to her
        for number in CASES:
            assert number in letter
        assert "9:26-cr-00001" not in letter
        assert JOHN["name"] not in letter.upper()
        assert "inclusion proof" in letter
        assert "8 U.S.C. 1253(a)(1)" in letter
        capsys.readouterr()
        # errors: one line, non-zero exit, no value echoed
        short = [*base, "--reason", "too short", "--out", str(tmp_path / "x.json")]
        assert run(short) == 1
        wrong = ["accounting", "subject", "--tin", JANE["tin"], "--name", "NOT HER"]
        assert run([*wrong, "--reason", REASON, "--out", str(tmp_path / "y.json")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 2
        assert "request_invalid" in err
        assert "no_unique_match" in err
        assert JANE["tin"] not in err
        assert "NOT HER" not in err
        assert not (tmp_path / "y.json").exists()
    finally:
        get_settings.cache_clear()


def test_lookups_leak_nothing_into_logs_and_show_on_the_dashboard(
    server: RunningServer,
    officer: Identity,
    overseer: Identity,
    history: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert lookup(server, officer, JANE).status_code == 200
    assert lookup(server, officer, {"tin": JANE["tin"], "name": "JANE X DOE"}).status_code == 404
    assert lookup(server, officer, JANE, reason="short").status_code == 422
    formatter = JsonFormatter()
    logs = "\n".join(formatter.format(rec) for rec in caplog.records)
    assert '"event":"request"' in logs  # the logs were captured
    assert "/v1/accounting/subject" in logs
    for secret in (JANE["tin"], JANE["tin"].replace("-", ""), "JANE", "DOE", REASON[:30]):
        assert secret.upper() not in logs.upper()
    with server.client(overseer) as client:
        page = client.get("/oversight").text
    m = re.search(r'data-total="accounting_lookups">(\d+)<', page)
    assert m is not None
    assert int(m.group(1)) >= 2
    assert "JANE" not in page.upper()


@pytest.mark.postgres
def test_accounting_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same lookup on a real PostgreSQL: entries, proofs against the signed root."""
    pg_world = build_world(tmp_path / "pg-world", database_url=pg_url)
    agent_pg = pg_world.identity("agent-1")
    officer_pg = pg_world.identity("do-officer", role="disclosure_officer", agency="IRS-DO")
    with run_server(pg_world) as srv:
        with srv.client(agent_pg) as client:
            r = client.post("/v1/disclosures", json=body(pg_world.case(number=CASES[0])))
            assert r.status_code == 200, r.text
            refused = client.post(
                "/v1/disclosures",
                json=body(pg_world.case(number=CASES[1]), reason="immigration enforcement"),
            )
            assert refused.status_code == 403
        r = lookup(srv, officer_pg, JANE)
        assert r.status_code == 200, r.text
        answer = r.json()
        (entry,) = answer["disclosures"]
        assert entry["case_number"] == CASES[0]
        size, root = verify_note(answer["checkpoint"]["note"], keys(srv, officer_pg)["audit_vkey"])
        (leaf,) = leaves(pg_world, entry["leaf_index"], entry["leaf_index"] + 1)
        lh = _leaf_hash(rfc8785.dumps(leaf))
        path = [bytes.fromhex(h) for h in entry["inclusion_proof"]]
        assert rfc6962_root_from_path(entry["leaf_index"], size, lh, path) == root
        wrong = lookup(srv, officer_pg, {"tin": JANE["tin"], "name": "JANE X DOE"})
        assert wrong.status_code == 404
