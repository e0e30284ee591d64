"""Fail closed: without policy engine, audit log, database or keys nothing is disclosed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import taxaddr.disclosure.core as disclosure_mod
from taxaddr.api.runtime import engine_for
from taxaddr.db.schema import AuditAccounting
from taxaddr.errors import AuditUnavailable
from tests.api.apikit import (
    Identity,
    RunningServer,
    World,
    body,
    build_world,
    cleanup,
    run_server,
    tree_size,
)


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
    assert r.json()["warnings"] == []


# -- honest readiness (issue 16 items 5 and 8) ---------------------------------------------


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make files read-only even for root (``chattr +i``): SQLite then opens them
    read-only, as on a read-only mount or with a file mode the service cannot write."""
    present = [str(p) for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *present], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *present], check=True)


def _fresh_world(tmp_path: Path) -> World:
    world = build_world(tmp_path / "world")
    world.identity("agent-1")
    world.identity("overseer", role="oversight", agency="TIGTA")
    return world


def _assert_no_server_paths(answer: httpx.Response, *paths: Path) -> None:
    for path in paths:
        assert str(path) not in answer.text
        assert path.name not in answer.text
    assert "/" not in answer.json()["error"]["message"]


def test_read_only_database_is_not_ready_and_discloses_nothing(tmp_path: Path) -> None:
    world = _fresh_world(tmp_path)
    db = Path(world.settings.database_url.removeprefix("sqlite:///"))
    agent = world.identities["agent-1"]
    try:
        with run_server(world) as srv, srv.client(agent) as client:
            assert client.get("/readyz").status_code == 200
            before = tree_size(world)
            with immutable(db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                ready = client.get("/readyz")
                refused = client.post("/v1/disclosures", json=body(world.case()))
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "database_unavailable"
            _assert_no_server_paths(ready, db)
            assert refused.status_code == 503  # not a 200 the log cannot hold, not a 500
            assert refused.json()["error"]["code"] == "database_unavailable"
            assert "address" not in refused.json()
            assert client.get("/readyz").status_code == 200  # writable again: ready again
            assert tree_size(world) == before
    finally:
        cleanup()


def test_truncated_database_is_503_database_unavailable_not_500(tmp_path: Path) -> None:
    world = _fresh_world(tmp_path)
    db = Path(world.settings.database_url.removeprefix("sqlite:///"))
    cleanup()  # every connection closed: the WAL is checkpointed into the file
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 3)
    try:
        with run_server(world) as srv:
            with srv.client(world.identities["agent-1"]) as client:
                ready = client.get("/readyz")
                refused = client.post("/v1/disclosures", json=body(world.case()))
            with srv.client(world.identities["overseer"]) as client:
                checkpoint = client.get("/v1/audit/checkpoint")
        for answer in (ready, refused, checkpoint):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            _assert_no_server_paths(answer, db)
    finally:
        cleanup()


def test_5xx_bodies_never_name_server_files(world: World, agent: Identity) -> None:
    keys = world.root / "keys-without-pseudonym"
    shutil.copytree(world.keys_dir, keys)
    (keys / "pseudonym.key").unlink()
    policy_dir = world.root / "no-such-policy-dir"
    for update in ({"keys_dir": keys}, {"policy_dir": policy_dir}):
        settings = world.settings.model_copy(update=update)
        with run_server(world, settings) as srv, srv.client(agent) as client:
            answers = [client.post("/v1/disclosures", json=body(world.case()))]
            answers.append(client.get("/readyz"))
        for answer in answers:
            assert answer.status_code == 503
            assert answer.json()["error"]["message"] == answer.json()["error"]["code"].replace(
                "_", " "
            )
            _assert_no_server_paths(answer, keys, policy_dir, world.root)


def test_key_file_open_to_others_is_a_warning_in_test_and_not_ready_in_prod(
    world: World, agent: Identity
) -> None:
    keys = world.root / "keys-0644"
    shutil.copytree(world.keys_dir, keys)
    (keys / "kek" / "v1.key").chmod(0o644)
    settings = world.settings.model_copy(update={"keys_dir": keys})
    with run_server(world, settings) as srv, srv.client(agent) as client:
        tolerated = client.get("/readyz")
    assert tolerated.status_code == 200
    assert tolerated.json()["warnings"] == ["key_files_exposed"]
    # model_copy skips validation: prod's SQLite refusal is not what is tested here
    prod = settings.model_copy(update={"env": "prod"})
    with run_server(world, prod) as srv, srv.client(agent) as client:
        refused = client.get("/readyz")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "keys_unavailable"
    _assert_no_server_paths(refused, keys / "kek" / "v1.key")
    (keys / "kek" / "v1.key").chmod(0o600)
    with run_server(world, prod) as srv, srv.client(agent) as client:
        fixed = client.get("/readyz")
    assert fixed.status_code == 200
    assert fixed.json()["warnings"] == []


def test_method_not_allowed_names_the_allowed_methods(
    server: RunningServer, agent: Identity
) -> None:
    with server.client(agent) as client:
        for method, path, allowed in (
            ("DELETE", "/v1/disclosures", "POST"),
            ("GET", "/v1/disclosures", "POST"),
            ("POST", "/healthz", "GET"),
            ("PUT", "/v1/keys", "GET"),
            ("PATCH", "/v1/audit/entries", "GET"),
        ):
            answer = client.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == allowed, (method, path)
            assert answer.json()["error"]["code"] == "method_not_allowed"


def test_audit_reads_past_the_log_are_404_and_crossed_bounds_422(
    server: RunningServer, overseer: Identity
) -> None:
    with server.client(overseer) as client:
        size = int(client.get("/v1/audit/checkpoint").text.splitlines()[1])
        beyond = size + 10
        for path, params in (
            ("/v1/audit/proof/inclusion", {"leaf_index": 0, "tree_size": beyond}),
            ("/v1/audit/proof/consistency", {"first": 1, "second": beyond}),
        ):
            answer = client.get(path, params=params)
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "not_found"
        for path, params in (
            ("/v1/audit/proof/inclusion", {"leaf_index": 3, "tree_size": 2}),
            ("/v1/audit/proof/consistency", {"first": 3, "second": 2}),
            ("/v1/audit/entries", {"start": 5, "end": 5}),
            ("/v1/oversight/summary", {"from": "2026-02-01", "to": "2026-01-01"}),
            ("/v1/oversight/summary", {"to": "2026-01-01"}),
            ("/v1/reports/compliance", {"from": "2026-01-01", "to": "2026-01-02", "format": "x"}),
        ):
            answer = client.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
            assert answer.json()["error"]["code"] == "request_invalid"
        past_the_end = client.get("/v1/audit/entries", params={"start": beyond, "end": beyond + 5})
        assert past_the_end.status_code == 200
        assert past_the_end.json() == {"entries": []}
        assert client.get("/oversight", params={"from": "", "to": ""}).status_code == 200
