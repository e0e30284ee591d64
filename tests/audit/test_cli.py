"""`taxaddr audit checkpoint | verify | prove | vkey` end to end on a SQLite file."""

from __future__ import annotations

import base64
import json

import pytest
import rfc8785
from sqlalchemy import text

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import open_checkpoint, parse_vkey
from taxaddr.audit.log import bulk_append
from taxaddr.audit.service import get_entries
from taxaddr.cli import run
from taxaddr.db import make_engine, write_transaction
from taxaddr.migrate import upgrade
from tests.audit.conftest import make_leaf


@pytest.fixture
def cli_log(env: dict[str, str]) -> str:
    url = env["TAXADDR_DATABASE_URL"]
    upgrade(url)
    engine = make_engine(url)
    with write_transaction(engine) as session:
        bulk_append(session, [make_leaf(i) for i in range(6)])
    engine.dispose()
    return url


def test_checkpoint_vkey_and_prove_verify_for_a_third_party(
    cli_log: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "vkey"]) == 0
    verifier = parse_vkey(capsys.readouterr().out)
    assert run(["audit", "checkpoint"]) == 0
    note = capsys.readouterr().out
    checkpoint = open_checkpoint(note, verifier, "taxaddr.local/audit")
    assert checkpoint.tree_size == 6
    assert run(["audit", "prove", "--leaf", "4"]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["leaf_index"] == 4
    assert proof["tree_size"] == 6
    assert set(proof) == {"leaf_index", "tree_size", "hashes"}
    # a third party re-canonicalizes the entry (RFC 8785) and hashes it
    leaf = merkle.leaf_hash(rfc8785.dumps(_entry(cli_log, 4)))
    hashes = [bytes.fromhex(h) for h in proof["hashes"]]
    assert merkle.verify_inclusion(4, 6, leaf, hashes, checkpoint.root_hash)
    assert run(["audit", "prove", "--leaf", "1", "--tree-size", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["tree_size"] == 3


def _entry(url: str, index: int) -> dict[str, object]:
    """What a third party gets from GET /v1/audit/entries."""
    engine = make_engine(url)
    with write_transaction(engine) as session:
        (entry,) = get_entries(session, index, index + 1)
    engine.dispose()
    return dict(entry["leaf"])


def test_verify_ok_then_tampered_exits_1_naming_the_leaf(
    cli_log: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    assert run(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("ok: 6 leaves")
    engine = make_engine(cli_log)
    with write_transaction(engine) as session:
        session.execute(text("DELETE FROM audit_leaves WHERE leaf_index = 3"))
    engine.dispose()
    assert run(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "leaf 3" in err
    assert err.startswith("taxaddr: integrity_error: leaf 3: missing")


def test_prove_refuses_a_leaf_outside_the_tree(
    cli_log: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "prove", "--leaf", "6"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("taxaddr: request_invalid:")
    assert "Traceback" not in err


def test_checkpoint_root_is_base64_of_the_tree_root(
    cli_log: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "checkpoint"]) == 0
    lines = capsys.readouterr().out.split("\n")
    engine = make_engine(cli_log)
    with write_transaction(engine) as session:
        rows = session.execute(
            text("SELECT leaf_json FROM audit_leaves ORDER BY leaf_index")
        ).scalars()
        root = merkle.root([merkle.leaf_hash(bytes(r)) for r in rows])
    engine.dispose()
    assert lines[:3] == ["taxaddr.local/audit", "6", base64.b64encode(root).decode()]
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 taxaddr.local/audit ")
