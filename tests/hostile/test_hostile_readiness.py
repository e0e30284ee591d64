"""Hostile replays of issue 16 items 5, 7 and 8 against a real ``taxaddr serve``.

As a careless operator and a curious client would, on 127.0.0.1. What broke before:
``/readyz`` said ready on a read-only database while every disclosure failed; a
truncated database gave 500 ``internal_error`` and ``audit verify`` printed
``unexpected DatabaseError``; KEK files at 0644 were accepted silently; 503 bodies
showed server file paths; a policy syntax error wrote a raw traceback line into
the JSON log; 405 answers had no ``Allow``; the OpenAPI document omitted 403 on
the GET operations and marked the required ``from``/``to`` optional; the report
and receipt public keys were not discoverable.

Each refusal to start must be one stderr line and a non-zero exit, before
anything listens; everything a running server writes to stderr must be JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.apikit import REPO, Identity, World, body, build_world, cleanup, serve_command
from tests.pg import free_port

TAXADDR = Path(sys.executable).parent / "taxaddr"
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("hostile-readiness"))
    w.identity("agent-1")
    w.identity("overseer", role="oversight", agency="TIGTA")
    w.identity("prometheus", role="monitor", agency="TIGTA")
    yield w
    cleanup()


def _database(world: World) -> Path:
    return Path(world.settings.database_url.removeprefix("sqlite:///"))


def _copy_world(world: World, root: Path) -> World:
    """The world's keys and database, copied (every connection closed first, so the
    database file holds everything and its WAL is empty)."""
    cleanup()
    shutil.copytree(world.keys_dir, root / "keys")
    shutil.copy2(_database(world), root / "taxaddr.db")
    settings = world.settings.model_copy(
        update={"keys_dir": root / "keys", "database_url": f"sqlite:///{root / 'taxaddr.db'}"}
    )
    return World(root=root, settings=settings, keystore=world.keystore, identities=world.identities)


def _refusal(world: World, **env: str) -> str:
    """Run ``taxaddr serve``; it must exit non-zero by itself with exactly one stderr
    line and never listen. Returns that line."""
    port = free_port()
    command, full_env = serve_command(world, port, TAXADDR_WORKERS="1", **env)
    done = subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing ever listened
    return lines[0]


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    present = [str(p) for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *present], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *present], check=True)


# -- start-up refusals ----------------------------------------------------------------------


def test_serve_and_audit_verify_refuse_a_truncated_database_in_one_line(
    world: World, tmp_path: Path
) -> None:
    copy = _copy_world(world, tmp_path)
    db = _database(copy)
    with db.open("r+b") as f:
        f.truncate(db.stat().st_size // 3)
    line = _refusal(copy)
    assert line.startswith("taxaddr: database_unavailable: ")
    assert "corrupt, truncated" in line
    env = {
        **os.environ,
        "TAXADDR_ENV": "test",
        "TAXADDR_KEYS_DIR": str(copy.keys_dir),
        "TAXADDR_DATABASE_URL": copy.settings.database_url,
    }
    verify = subprocess.run(
        [str(TAXADDR), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 1
    assert verify.stderr.startswith("taxaddr: database_unavailable: the database file is corrupt")
    assert len(verify.stderr.splitlines()) == 1
    assert "unexpected" not in verify.stderr


def test_serve_refuses_a_corrupt_database_of_the_right_size(world: World, tmp_path: Path) -> None:
    copy = _copy_world(world, tmp_path)
    db = _database(copy)
    size = db.stat().st_size
    page = 4096
    with db.open("r+b") as f:  # keep the header page; scribble over every other page
        f.seek(page)
        f.write(os.urandom(size - page))
    assert db.stat().st_size == size
    line = _refusal(copy)
    assert line.startswith("taxaddr: database_unavailable: ")
    assert "corrupt" in line


def test_serve_refuses_a_read_only_database(world: World, tmp_path: Path) -> None:
    copy = _copy_world(world, tmp_path)
    db = _database(copy)
    with immutable(db):
        line = _refusal(copy)
    assert line.startswith("taxaddr: database_unavailable: ")


def test_serve_refuses_a_missing_or_unmigrated_database(world: World, tmp_path: Path) -> None:
    copy = _copy_world(world, tmp_path)
    missing = tmp_path / "nothing-here.db"
    line = _refusal(copy, TAXADDR_DATABASE_URL=f"sqlite:///{missing}")
    assert line == f"taxaddr: database_unavailable: database file missing: {missing} " + (
        "(run: taxaddr db upgrade)"
    )
    assert not missing.exists()  # not created on the way
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    line = _refusal(copy, TAXADDR_DATABASE_URL=f"sqlite:///{empty}")
    assert (
        line == "taxaddr: database_unavailable: database is not migrated (run: taxaddr db upgrade)"
    )


def test_serve_refuses_a_policy_with_a_syntax_error(world: World, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(world.settings.policy_dir, policies)
    module = next(p for p in policies.glob("*.rego") if not p.name.endswith("_test.rego"))
    module.write_text(module.read_text() + "\nthis is { not rego\n")
    line = _refusal(world, TAXADDR_POLICY_DIR=str(policies))
    assert line.startswith("taxaddr: policy_unavailable: ")
    assert "does not compile" in line


def test_a_policy_engine_dropped_on_another_thread_logs_json_not_a_traceback(
    world: World, tmp_path: Path
) -> None:
    """The raw line of issue 16: a regorus engine built in a worker thread for a broken
    policy, dropped on another thread ('unsendable'), printed a traceback into the log;
    an uncaught thread exception (with a TIN-shaped message), a warning and another
    library's log record did too."""
    policies = tmp_path / "policies"
    shutil.copytree(world.settings.policy_dir, policies)
    module = next(p for p in policies.glob("*.rego") if not p.name.endswith("_test.rego"))
    module.write_text(module.read_text() + "\nthis is { not rego\n")
    script = """
import sys, threading, warnings
from pathlib import Path
from taxaddr.api.logs import configure_logging
from taxaddr.errors import PolicyUnavailable
from taxaddr.policy.embedded import EmbeddedPolicyEngine

configure_logging("INFO")
held = []
def build():
    try:
        EmbeddedPolicyEngine(Path(sys.argv[1]))
    except PolicyUnavailable as exc:
        held.append(exc)
worker = threading.Thread(target=build)
worker.start(); worker.join()
assert held
held.clear()  # the engine in the traceback is dropped here, on the main thread
def fail():
    raise ValueError("912-77-3456 ZQXLEAKNAME")
failing = threading.Thread(target=fail, name="failing")
failing.start(); failing.join()
warnings.warn("912-77-3456 ZQXLEAKNAME")
import logging
logging.getLogger("asyncio").error("Fatal error on SSL transport")
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(policies)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert [e.get("event", e["logger"]) for e in events] == [
        "unraisable_exception",
        "thread_exception",
        "python_warning",
        "asyncio",  # another library's logger: JSON too
    ]
    assert events[0]["error_type"] == "RuntimeError"
    assert "912" not in done.stderr
    assert "ZQXLEAKNAME" not in done.stderr


# -- running servers ------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, ident: Identity) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=ident.ssl_context(), timeout=30)

    def stderr_events(self) -> list[dict[str, object]]:
        """Every stderr line, each parsed as JSON (a line that is not JSON fails)."""
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextmanager
def serving(world: World, name: str, **env: str) -> Iterator[Served]:
    port = free_port()
    command, full_env = serve_command(world, port, **env)
    log = world.root / f"{name}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=err)
    srv = Served(port, proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        ident = world.identities["agent-1"]
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with srv.client(ident) as client:
                    if client.get("/healthz").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        yield srv
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_kek_open_to_others_is_a_json_warning_in_test_and_readyz_says_so(
    world: World, tmp_path: Path
) -> None:
    copy = _copy_world(world, tmp_path)
    (copy.keys_dir / "kek" / "v1.key").chmod(0o644)
    with serving(copy, "kek-0644", TAXADDR_WORKERS="1") as srv:
        with srv.client(world.identities["agent-1"]) as client:
            ready = client.get("/readyz")
        events = srv.stderr_events()
    assert ready.status_code == 200
    assert ready.json()["warnings"] == ["key_files_exposed"]
    warning = next(e for e in events if e.get("event") == "key_files_exposed")
    assert warning["level"] == "warning"
    assert warning["files"] == ["kek/v1.key"]


@pytest.mark.postgres
def test_kek_open_to_others_is_refused_in_prod(tmp_path: Path, pg_url: str) -> None:
    prod = build_world(tmp_path / "prod", database_url=pg_url)
    (prod.keys_dir / "kek" / "v1.key").chmod(0o644)
    line = _refusal(prod, TAXADDR_ENV="prod", TAXADDR_DUAL_CONTROL="true")
    assert line.startswith("taxaddr: keys_unavailable: ")
    assert "kek/v1.key" in line
    (prod.keys_dir / "kek" / "v1.key").chmod(0o600)
    (prod.keys_dir / "client-ca.key").chmod(0o640)  # any secret file, not only the KEK
    assert "client-ca.key" in _refusal(prod, TAXADDR_ENV="prod", TAXADDR_DUAL_CONTROL="true")


def test_503_bodies_carry_codes_never_server_paths(world: World, tmp_path: Path) -> None:
    """A key file gone after start: workers load keys when first needed, so the
    disclosure and /readyz fail with keys_unavailable, and say nothing about where."""
    copy = _copy_world(world, tmp_path)
    with serving(copy, "keys-gone", TAXADDR_WORKERS="2") as srv:
        (copy.keys_dir / "pseudonym.key").unlink()
        with srv.client(world.identities["agent-1"]) as client:
            answers = [client.post("/v1/disclosures", json=body(world.case())) for _ in range(4)]
            answers += [client.get("/readyz") for _ in range(4)]
        events = srv.stderr_events()
    refused = [a for a in answers if a.status_code == 503]
    assert refused, [a.text for a in answers]
    for answer in answers:
        assert answer.status_code != 200 or "address" not in answer.json()
    for answer in refused:
        error = answer.json()["error"]
        assert error["code"] == "keys_unavailable"
        assert error["message"] == "keys unavailable"
        assert str(tmp_path) not in answer.text
        assert "pseudonym" not in answer.text
    assert all(isinstance(e, dict) for e in events)  # and every stderr line was JSON


def test_interfaces_tell_the_truth_on_a_real_server(world: World, tmp_path: Path) -> None:
    copy = _copy_world(world, tmp_path)
    with serving(copy, "interfaces", TAXADDR_WORKERS="1") as srv:
        keys = {}
        for ident_id in ("agent-1", "overseer", "prometheus"):
            with srv.client(world.identities[ident_id]) as client:
                keys[ident_id] = client.get("/v1/keys")
                not_allowed = client.delete("/v1/disclosures")
                assert not_allowed.status_code == 405
                assert not_allowed.headers["allow"] == "POST"
                document = client.get("/openapi.json").json()
        events = srv.stderr_events()
    assert all(k.status_code == 200 for k in keys.values())
    assert len({k.text for k in keys.values()}) == 1
    assert set(keys["agent-1"].json()) == {"audit_vkey", "receipt_jwk", "report_public_key_pem"}
    gets = [(p, op) for p, ops in document["paths"].items() for m, op in ops.items() if m == "get"]
    identified = [(p, op) for p, op in gets if p not in {"/healthz", "/readyz"}]
    assert len(identified) >= 9  # the 8 of the report, and /v1/keys
    assert all("403" in op["responses"] for _, op in identified)
    for path in ("/v1/oversight/summary", "/v1/reports/compliance"):
        params = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        assert params["from"]["required"] is True
        assert params["to"]["required"] is True
    assert any(e.get("event") == "request" for e in events)
