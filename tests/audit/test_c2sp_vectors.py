"""Published C2SP vectors and a second implementation (tests/audit/tlog_ref.py) against
the service's signed notes, cosignatures, witness and tiles.

Vectors, each from its public source:
* golang.org/x/mod/sumdb/note (note_test.go / doc example): the PeterNeumann key;
* a checkpoint of the Certificate Transparency static log
  arche2025h1.staging.ct.transparency.dev as served with its witnesses' cosignatures
  (Ed25519 log signature; cosignature/v1 of remora.n621.de, whose vkey is published in
  transparency-dev/formats' note_cosigv1_test.go).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Verifier,
    open_checkpoint,
    parse_vkey,
    sign_checkpoint,
)
from taxaddr.audit.cosignature import Cosigner, CosignerKey, note_body
from taxaddr.audit.cosignature import parse_vkey as parse_cosigner_vkey
from taxaddr.audit.log import bulk_append
from taxaddr.audit.offline import verify_offline_proof
from taxaddr.audit.witnessing import parse_witnesses
from taxaddr.cli import run
from taxaddr.db import make_engine, write_transaction
from taxaddr.errors import ConfigError, IntegrityError
from taxaddr.migrate import upgrade
from taxaddr.witness.protocol import add_checkpoint
from taxaddr.witness.state import WitnessState
from tests.audit import tlog_ref
from tests.audit.conftest import make_leaf

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)

ARCHE_VKEY = (
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f"
)
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
ARCHE_NOTE = """arche2025h1.staging.ct.transparency.dev
1432088532
U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=

— arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=
— arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=
— transparency.dev/DEV:witness-little-garden 2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==
— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==
— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==
— witness.stagemole.eu Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==
"""  # noqa: E501


def test_the_go_note_key_hash_and_signature() -> None:
    verifier = parse_vkey(PETER_VKEY)  # checks c74f20a3 = SHA-256(name \n 0x01 key)[:4]
    assert verifier.vkey() == PETER_VKEY
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert Verifier.from_public_key("PeterNeumann", key.public_key()).vkey() == PETER_VKEY
    blob = base64.b64decode(PETER_SIG)
    assert blob[:4] == verifier.key_hash
    assert blob[4:] == key.sign(PETER_TEXT.encode())  # Ed25519 is deterministic
    assert tlog_ref.verify_log_signature(f"{PETER_TEXT}\n— PeterNeumann {PETER_SIG}\n", PETER_VKEY)


def test_a_real_ct_checkpoint_and_its_witness_cosignature() -> None:
    checkpoint = open_checkpoint(
        ARCHE_NOTE, parse_vkey(ARCHE_VKEY), ARCHE_VKEY.split("+", maxsplit=1)[0]
    )
    assert checkpoint.tree_size == 1432088532
    remora = parse_cosigner_vkey(REMORA_VKEY)  # checks da77ade7 with type 0x04
    assert remora.vkey() == REMORA_VKEY
    line = next(x for x in ARCHE_NOTE.splitlines() if x.startswith("— remora.n621.de "))
    timestamp = remora.verify(note_body(ARCHE_NOTE), line)
    assert timestamp is not None
    assert timestamp == tlog_ref.verify_cosignature(ARCHE_NOTE, REMORA_VKEY)
    forged = ARCHE_NOTE.replace("1432088532", "1432088533")
    with pytest.raises(CheckpointError):
        open_checkpoint(forged, parse_vkey(ARCHE_VKEY))
    with pytest.raises(CheckpointError):
        remora.verify(note_body(forged), line)
    assert tlog_ref.verify_cosignature(forged, REMORA_VKEY) is None


def _log(origin: str) -> tuple[Ed25519PrivateKey, Verifier]:
    key = Ed25519PrivateKey.generate()
    return key, Verifier.from_public_key(origin, key.public_key())


def test_witness_cosignatures_verify_with_the_second_implementation(tmp_path: Path) -> None:
    origin = "taxaddr.test/audit"
    log_key, log = _log(origin)
    witness = CosignerKey.generate("court.example/witness")
    state = WitnessState(tmp_path / "state.json")
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(1000)]
    try:
        first = sign_checkpoint(Checkpoint(origin, 10, merkle.root(leaves[:10])), log_key, origin)
        answer = add_checkpoint(
            b"old 0\n\n" + first.encode(), {origin: [log]}, state, witness, 1700000000
        )
        assert answer.status == 200
        cosigned = first + answer.body.decode()
        vkey = witness.cosigner.vkey()
        assert tlog_ref.parse_vkey(vkey)[2] == 0x04
        assert tlog_ref.verify_cosignature(cosigned, vkey) == 1700000000
        assert tlog_ref.verify_log_signature(cosigned, log.vkey())
        # growth with a proof the second implementation's tree agrees with
        second = sign_checkpoint(Checkpoint(origin, 1000, tlog_ref.mth(leaves)), log_key, origin)
        proof = merkle.consistency_proof(leaves, 10, 1000)
        body = "old 10\n" + "".join(base64.b64encode(p).decode() + "\n" for p in proof)
        answer = add_checkpoint(
            (body + "\n" + second).encode(), {origin: [log]}, state, witness, 1700000100
        )
        assert answer.status == 200
        assert tlog_ref.verify_cosignature(second + answer.body.decode(), vkey) == 1700000100
    finally:
        state.close()


def test_a_quorum_counts_each_witness_once(tmp_path: Path) -> None:
    """Naming one witness's key twice must not make one cosignature count for two."""
    origin = "taxaddr.test/audit"
    log_key, log = _log(origin)
    witness = CosignerKey.generate("court.example/witness")
    leaf = {"index": 0}
    note = sign_checkpoint(
        Checkpoint(origin, 1, merkle.leaf_hash(rfc8785.dumps(leaf))), log_key, origin
    )
    note += witness.cosign(note_body(note), 1700000000)
    document = {"leaf": leaf, "leaf_index": 0, "checkpoint_note": note, "inclusion_proof": []}
    checked = verify_offline_proof(document, log, [witness.cosigner], 1)
    assert checked.witnesses == (witness.cosigner.name,)
    with pytest.raises(IntegrityError, match="2 required"):
        verify_offline_proof(document, log, [witness.cosigner, witness.cosigner], 2)


def test_one_witness_key_under_two_names_is_one_witness(tmp_path: Path) -> None:
    """cosignature/v1 does not commit to the cosigner name: the log can copy a witness's
    line under a second name (with that name's key ID) and it verifies. One key given
    under two names must still count once toward the quorum, and configuring it so is
    refused."""
    origin = "taxaddr.test/audit"
    log_key, log = _log(origin)
    witness = CosignerKey.generate("court.example/witness")
    alias = Cosigner.from_public_key("tigta.example/witness", witness.private_key.public_key())
    leaf = {"index": 0}
    note = sign_checkpoint(
        Checkpoint(origin, 1, merkle.leaf_hash(rfc8785.dumps(leaf))), log_key, origin
    )
    line = witness.cosign(note_body(note), 1700000000)
    blob = base64.b64decode(line.split(" ")[2])
    relabelled = f"\u2014 {alias.name} {base64.b64encode(alias.key_id + blob[4:]).decode()}\n"
    note += line + relabelled
    assert alias.verify(note_body(note), relabelled.rstrip("\n")) == 1700000000  # the weakness
    document = {"leaf": leaf, "leaf_index": 0, "checkpoint_note": note, "inclusion_proof": []}
    with pytest.raises(IntegrityError, match="cosigned by 1 of the given witnesses, 2 required"):
        verify_offline_proof(document, log, [witness.cosigner, alias], 2)
    config = json.dumps(
        [
            {"vkey": witness.cosigner.vkey(), "url": "http://127.0.0.1:1"},
            {"vkey": alias.vkey(), "url": "http://127.0.0.1:2"},
        ]
    )
    with pytest.raises(ConfigError, match="one witness key under two names"):
        parse_witnesses(config)


def test_exported_tiles_verify_with_the_second_implementation(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = env["TAXADDR_DATABASE_URL"]
    upgrade(url)
    engine = make_engine(url)
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(300)])
    assert run(["audit", "vkey"]) == 0
    vkey = capsys.readouterr().out.strip()
    mirror = tmp_path / "mirror"

    def fetch(path: str) -> bytes:
        return (mirror / path).read_bytes()

    assert run(["audit", "export-tiles", "--out", str(mirror)]) == 0
    first = (mirror / "checkpoint").read_text()
    assert tlog_ref.verify_log_signature(first, vkey)
    _, size1, root1 = tlog_ref.checkpoint_claims(first)
    assert size1 == 300
    tlog_ref.check_tiles(fetch, 300)
    assert tlog_ref.root_from_tiles(fetch, 300) == root1

    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(300, 600)])
    engine.dispose()
    assert run(["audit", "export-tiles", "--out", str(mirror)]) == 0
    second = (mirror / "checkpoint").read_text()
    assert tlog_ref.verify_log_signature(second, vkey)
    _, size2, root2 = tlog_ref.checkpoint_claims(second)
    entries = tlog_ref.check_tiles(fetch, size2)
    assert tlog_ref.root_from_tiles(fetch, size2) == root2
    # the grown mirror still proves the first checkpoint (its old partial tiles stay)
    assert tlog_ref.root_from_tiles(fetch, 300) == root1
    assert tlog_ref.mth([tlog_ref.h_leaf(e) for e in entries[:300]]) == root1
    assert hashlib.sha256(b"\x00" + entries[0]).digest() == fetch("tile/0/000")[:32]


@pytest.mark.parametrize(
    "leaf",
    [
        '{"index": 0, "x": 1e400}',
        '{"index": 0, "x": NaN}',
        '{"index": 0, "x": 123456789012345678901234567890}',
        '{"index": 0, "x": "\\ud800"}',
    ],
)
def test_a_leaf_rfc8785_cannot_canonicalize_is_refused_not_a_crash(leaf: str) -> None:
    """Under a genuinely signed checkpoint, a hostile proof file's leaf with values JCS
    cannot represent is an integrity refusal, not an unexpected exception."""
    origin = "taxaddr.test/audit"
    log_key, log = _log(origin)
    note = sign_checkpoint(Checkpoint(origin, 1, merkle.leaf_hash(b"{}")), log_key, origin)
    document = json.loads(
        f'{{"leaf": {leaf}, "leaf_index": 0, "checkpoint_note": {json.dumps(note)}, '
        '"inclusion_proof": []}'
    )
    with pytest.raises(IntegrityError, match="leaf: not canonical JSON"):
        verify_offline_proof(document, log, [], 0)
