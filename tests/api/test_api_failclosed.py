"""Fail closed: without policy engine, audit log, database or keys nothing is disclosed."""

from __future__ import annotations

import shutil
import socket
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import taxaddr.api.disclosure as disclosure_mod
from taxaddr.api.runtime import engine_for
from taxaddr.audit.models import AuditAccounting
from taxaddr.errors import AuditUnavailable
from tests.api.apikit import Identity, RunningServer, World, body, run_server, tree_size


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accounting_rows(world: World) -> int:
    with Session(engine_for(world.settings)) as session:
        return int(session.scalar(select(func.count()).select_from(AuditAccounting)) or 0)


def test_policy_engine_down_is_503_policy_unavailable(world: World, agent: Identity) -> None:
    settings = world.settings.model_copy(
        update={
            "policy_engine": "opa",
            "opa_url": f"http://127.0.0.1:{_dead_port()}",
            "opa_timeout_ms": 300,
        }
    )
    before = tree_size(world)
    with run_server(world, settings) as srv, srv.client(agent) as client:
        r = client.post("/v1/disclosures", json=body(world.case()))
        ready = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "policy_unavailable"
    assert "address" not in r.json()
    assert tree_size(world) == before  # 503 appends no leaf
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "policy_unavailable"


def test_audit_append_failure_is_503_and_discloses_nothing(
    server: RunningServer, world: World, agent: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise AuditUnavailable("audit log unavailable")

    monkeypatch.setattr(disclosure_mod, "append_leaf", broken)
    case = world.case(max_disclosures=1)
    before_tree, before_acct = tree_size(world), _accounting_rows(world)
    with server.client(agent) as client:
        r = client.post("/v1/disclosures", json=body(case))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "audit_unavailable"
    assert "address" not in r.text
    assert "Quill" not in r.text
    assert tree_size(world) == before_tree
    assert _accounting_rows(world) == before_acct
    # the quota was not consumed: once the log works again the one disclosure succeeds
    monkeypatch.undo()
    with server.client(agent) as client:
        assert client.post("/v1/disclosures", json=body(case)).status_code == 200


def test_database_down_is_503(world: World, agent: Identity) -> None:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{_dead_port()}/none?connect_timeout=2"
    settings = world.settings.model_copy(update={"database_url": dead})
    with run_server(world, settings) as srv, srv.client(agent) as client:
        r = client.post("/v1/disclosures", json=body(world.case()))
        ready = client.get("/readyz")
        audit = client.get("/v1/audit/checkpoint")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "database_unavailable"
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "database_unavailable"
    assert audit.status_code == 503


def test_missing_keys_are_503_keys_unavailable(world: World, agent: Identity) -> None:
    keys = world.root / "keys-broken"
    shutil.copytree(world.keys_dir, keys)
    (keys / "pseudonym.key").unlink()
    settings = world.settings.model_copy(update={"keys_dir": keys})
    with run_server(world, settings) as srv, srv.client(agent) as client:
        r = client.post("/v1/disclosures", json=body(world.case()))
        ready = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "keys_unavailable"
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "keys_unavailable"


def test_ready_when_everything_is_usable(server: RunningServer, agent: Identity) -> None:
    with server.client(agent) as client:
        r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "keys": "ok", "policy": "ok", "audit": "ok"}
