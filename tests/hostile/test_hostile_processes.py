"""Hostile replays against the processes of ``taxaddr serve`` (issue 16 items 3 and 5).

Each test starts the real supervisor with two workers on 127.0.0.1 and attacks it
as a careless operator would. What broke before: a second ``taxaddr serve`` on the
same port started anyway (four listeners from two supervisors); workers outlived a
``kill -9`` of their supervisor (serving with parent PID 1); ``kill -STOP`` of one
worker under load left the other blocked on the cross-process writer lock (no
timeout, taken on the event loop), /healthz stopped answering, and the supervisor
only noticed workers that exited.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.apikit import Identity, World, body, build_world, cleanup, serve_command, tree_size
from tests.pg import free_port

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("hostile-processes"))
    w.identity("agent-1")
    yield w
    cleanup()


@pytest.fixture(scope="module")
def agent(world: World) -> Identity:
    return world.identities["agent-1"]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    seen: set[int] = field(default_factory=set)  # every worker pid ever seen

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        pids = children(self.proc.pid)
        self.seen.update(pids)
        return pids

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
        return [e for e in lines if e.get("event") == name]

    def stop(self) -> int:
        self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        reap(self.seen)
        return int(self.proc.returncode)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def reap(pids: set[int]) -> None:
    """Kill what is left of ``pids`` (processes this module started), whatever the test did."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def run_serve(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a ``taxaddr serve`` that is expected to exit; if it serves instead, stop it
    and every worker it started after ``timeout`` (returncode then None)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(children(proc.pid))
        time.sleep(0.1)
    if proc.poll() is None:
        seen.update(children(proc.pid))
        proc.kill()
    reap(seen)  # first: workers share the supervisor's stderr
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


@contextmanager
def serve(world: World, agent: Identity, **env: str) -> Iterator[Served]:
    port = free_port()
    command, full_env = serve_command(world, port, TAXADDR_WORKERS="2", **env)
    log = world.root / f"serve-{port}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=err)
    served = Served(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while len(served.workers()) < 2 or not healthz(served, agent):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        time.sleep(1.0)  # both workers up: each heartbeats only once it serves
        yield served
    finally:
        served.stop()


def alive(pid: int) -> bool:
    """True while any thread of ``pid`` runs (a zombie waiting for its reaper is dead;
    the main thread of a dying process can be a zombie while the others still exit)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            return True
    return False


def connect(served: Served, ident: Identity, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", served.port), timeout=timeout)
    return ident.ssl_context().wrap_socket(raw, server_hostname="localhost")


def ask(tls: ssl.SSLSocket, request: bytes = HEALTHZ) -> int:
    """One request on a keep-alive connection; its status (raises on timeout)."""
    tls.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next(
        (
            int(x.split(b":")[1])
            for x in head.split(b"\r\n")
            if x.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(rest) < length:
        rest += tls.recv(65536)
    return int(head.split()[1])


def healthz(served: Served, ident: Identity, timeout: float = 5.0) -> bool:
    try:
        with connect(served, ident, timeout) as tls:
            return ask(tls) == 200
    except OSError:
        return False


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (any address), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def worker_of(served: Served, tls: ssl.SSLSocket) -> int | None:
    """The worker process holding the server side of the connection ``tls``."""
    client_port = tls.getsockname()[1]
    inode = None
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.rsplit(":", 1)[1], 16) == served.port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
        ):
            inode = fields[9]
    for pid in served.workers():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def connections_on_each_worker(served: Served, agent: Identity) -> dict[int, ssl.SSLSocket]:
    """One open keep-alive connection on each worker (the kernel picks the worker)."""
    found: dict[int, ssl.SSLSocket] = {}
    spare = []
    for _ in range(40):
        tls = connect(served, agent)
        assert ask(tls) == 200
        pid = worker_of(served, tls)
        if pid is not None and pid not in found:
            found[pid] = tls
        else:
            spare.append(tls)
        if len(found) == 2:
            break
    for tls in spare:
        tls.close()
    assert len(found) == 2, "no connection landed on one of the workers"
    return found


# -- one service per port -------------------------------------------------------------------


def test_a_second_serve_on_the_same_port_exits_with_one_line(world: World, agent: Identity) -> None:
    with serve(world, agent) as first:
        assert listeners(first.port) == 2
        for workers in ("2", "1"):
            command, env = serve_command(world, first.port, TAXADDR_WORKERS=workers)
            returncode, err = run_serve(command, env, timeout=30)
            assert returncode > 0
            assert err.strip().splitlines() == [
                f"taxaddr: config_invalid: port {first.port} is already served by another "
                "taxaddr serve"
            ]
            assert "Traceback" not in err
        assert listeners(first.port) == 2  # no listener was added beside the first two
        assert healthz(first, agent)
        assert first.stop() == 0


# -- no orphans -----------------------------------------------------------------------------


def test_workers_exit_within_5_seconds_of_their_supervisor_being_killed(
    world: World, agent: Identity
) -> None:
    with serve(world, agent) as served:
        workers = served.workers()
        assert len(workers) == 2
        served.proc.kill()
        served.proc.wait(10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if alive(pid)] == []
        assert listeners(served.port) == 0
        assert not healthz(served, agent, timeout=2)


# -- a stalled worker -----------------------------------------------------------------------


def test_a_stopped_worker_is_replaced_while_the_other_keeps_answering(
    world: World, agent: Identity
) -> None:
    with serve(world, agent, TAXADDR_WORKER_HEARTBEAT_TIMEOUT_SECONDS="1.5") as served:
        on = connections_on_each_worker(served, agent)
        stopped, other = sorted(on)
        os.kill(stopped, signal.SIGSTOP)
        started = time.monotonic()
        try:
            while alive(stopped) and time.monotonic() - started < 10:
                t0 = time.monotonic()
                assert ask(on[other]) == 200  # the other worker answers all along
                assert time.monotonic() - t0 < 1.0
                time.sleep(0.1)
            replaced_after = time.monotonic() - started
        finally:
            for tls in on.values():
                tls.close()
            if alive(stopped):
                os.kill(stopped, signal.SIGCONT)
        assert not alive(stopped), "the stopped worker was not replaced"
        assert replaced_after < 1.5 + 3
        deadline = time.monotonic() + 30
        while len(served.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = served.workers()
        assert len(workers) == 2
        assert stopped not in workers
        assert other in workers
        time.sleep(1.0)
        assert all(healthz(served, agent) for _ in range(10))  # the replacement serves too
        assert served.stop() == 0
    assert [e["pids"] for e in served.events("worker_unresponsive")] == [[stopped]]
    replaced = served.events("worker_replaced")
    assert len(replaced) == 1
    assert replaced[0]["pids"][0] == stopped


def test_a_writer_lock_held_by_a_stalled_process_is_503_and_healthz_keeps_answering(
    world: World, agent: Identity
) -> None:
    # Deterministic form of the stall: this process holds the writer lock, as a worker
    # stopped inside its write transaction would.
    lock_path = world.settings.database_url.split("///", 1)[1] + "-writer.lock"
    case = world.case(max_disclosures=1000)
    with serve(world, agent, TAXADDR_WRITER_LOCK_TIMEOUT_SECONDS="0.5") as served:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            before = tree_size(world)
            with httpx.Client(base_url=served.base, verify=agent.ssl_context(), timeout=10) as c:
                for _ in range(4):  # over both workers, and again on each
                    t0 = time.monotonic()
                    r = c.post("/v1/disclosures", json=body(case))
                    assert r.status_code == 503
                    assert r.json()["error"]["code"] == "database_unavailable"
                    assert time.monotonic() - t0 < 3.0
            on = connections_on_each_worker(served, agent)
            for tls in on.values():  # neither event loop is blocked
                t0 = time.monotonic()
                assert ask(tls) == 200
                assert time.monotonic() - t0 < 1.0
                tls.close()
            assert tree_size(world) == before  # nothing was written, nothing half-written
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        statuses = []
        with httpx.Client(base_url=served.base, verify=agent.ssl_context(), timeout=10) as c:
            for _ in range(6):  # the lock is free again: every worker writes again
                statuses.append(c.post("/v1/disclosures", json=body(case)).status_code)
        assert statuses == [200] * 6
        assert served.stop() == 0


def test_kill_stop_of_one_worker_under_load_does_not_freeze_the_other(
    world: World, agent: Identity
) -> None:
    case = world.case(max_disclosures=100_000)
    lock_path = world.settings.database_url.split("///", 1)[1] + "-writer.lock"
    before = tree_size(world)
    with serve(
        world,
        agent,
        TAXADDR_WORKER_HEARTBEAT_TIMEOUT_SECONDS="2",
        TAXADDR_WRITER_LOCK_TIMEOUT_SECONDS="0.5",
        TAXADDR_RATE_LIMIT="0",
    ) as served:
        on = connections_on_each_worker(served, agent)
        stopped, other = sorted(on)
        outcomes: list[int | str] = []
        stop_load = threading.Event()

        def load() -> None:
            while not stop_load.is_set():
                try:
                    with httpx.Client(
                        base_url=served.base, verify=agent.ssl_context(), timeout=8
                    ) as c:
                        outcomes.append(c.post("/v1/disclosures", json=body(case)).status_code)
                except httpx.HTTPError as exc:
                    outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)  # under load
            assert stop_while_holding_the_writer_lock(stopped, lock_path), (
                "the worker never held the writer lock under load"
            )
            latencies = []
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                t0 = time.monotonic()
                assert ask(on[other]) == 200
                latencies.append(time.monotonic() - t0)
                time.sleep(0.1)
        finally:
            stop_load.set()
            for t in threads:
                t.join(20)
            for tls in on.values():
                tls.close()
            # the supervisor may have killed and replaced it meanwhile (heartbeat timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        assert max(latencies) < 1.5, latencies  # before: no answer at all
        assert served.stop() == 0
    answered = outcomes.count(200)
    assert answered > 0
    failed = len([o for o in outcomes if not isinstance(o, int)])
    added = tree_size(world) - before
    # no 200 without its leaf; a leaf without its answer only where the answer was lost
    assert answered <= added <= answered + failed
    assert set(outcomes) <= {200, 503, "ReadTimeout", "ReadError", "RemoteProtocolError",
                             "ConnectError", "ConnectTimeout"}  # fmt: skip


def stop_while_holding_the_writer_lock(pid: int, lock_path: str, tries: int = 400) -> bool:
    """SIGSTOP ``pid`` at a moment it holds the writers' flock (seen in /proc/locks):
    the issue's stall, made certain instead of left to chance. False if never caught."""
    inode = os.stat(lock_path).st_ino
    for _ in range(tries):
        os.kill(pid, signal.SIGSTOP)
        for row in Path("/proc/locks").read_text().splitlines():
            fields = row.split()
            # "1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF"; waiters have "->"
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue
            if int(fields[4]) == pid and int(fields[5].rsplit(":", 1)[1]) == inode:
                return True
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    return False
