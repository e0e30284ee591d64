"""`taxaddr serve` with two worker processes: one socket, shared limits, one view of metrics.

Each test starts the real supervisor (``TAXADDR_WORKERS=2``) as its own process and
talks to it over fresh mTLS connections, so the kernel spreads them over both
workers; the JSON logs name the worker (``pid``) that answered each request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taxaddr.api.runtime import engine_for
from taxaddr.api.workers import MAX_REPLACEMENTS, Supervisor
from taxaddr.db import WriterQueue
from taxaddr.errors import DatabaseUnavailable
from tests.api.apikit import (
    SEEDED_SECRETS,
    Identity,
    World,
    body,
    build_world,
    serve_command,
    tree_size,
)
from tests.pg import free_port


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    stderr: bytes = b""
    lines: list[dict[str, Any]] = field(default_factory=list)

    def client(self, ident: Identity) -> httpx.Client:
        """A new client: its first request opens a new TLS connection."""
        return httpx.Client(base_url=self.base, verify=ident.ssl_context(), timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        self.stderr = err
        self.lines = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
        return int(self.proc.returncode)

    def requests(self, route: str) -> list[dict[str, Any]]:
        return [e for e in self.lines if e.get("event") == "request" and e.get("route") == route]


@contextmanager
def serve(world: World, **env: str) -> Iterator[Served]:
    command, full_env = serve_command(world, free_port(), TAXADDR_WORKERS="2", **env)
    proc = subprocess.Popen(
        command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    port = command[-1]
    served = Served(proc, f"https://127.0.0.1:{port}")
    try:
        ident = next(iter(world.identities.values()))
        for _ in range(150):
            try:
                with served.client(ident) as c:
                    if c.get("/healthz").status_code == 200:
                        break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield served
    finally:
        if proc.poll() is None:
            served.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_rate_limit_and_the_metrics(world: World, agent: Identity) -> None:
    monitor = world.identity("monitor-1", role="monitor", agency="TIGTA")
    case = world.case()
    before = tree_size(world)
    with serve(world, TAXADDR_RATE_LIMIT="5") as srv:

        def one(_: int) -> int:
            with srv.client(agent) as client:  # a new connection per request
                return client.post("/v1/disclosures", json=body(case)).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = Counter(pool.map(one, range(30)))
        scrapes = []
        # 24 new connections: both workers answer (all on one: 1 in 8 million); each sees all
        for _ in range(24):
            with srv.client(monitor) as client:
                scrapes.append(client.get("/metrics").text)
        assert srv.stop() == 0
    assert statuses == Counter({200: 5, 429: 25})  # one bucket for both workers
    assert tree_size(world) == before + 5  # 429 appends no leaf
    pids = {e["pid"] for e in srv.requests("/v1/disclosures")}
    assert len(pids) == 2, "both workers answered disclosure requests"
    for text in scrapes:
        counted = "taxaddr_disclosure_requests_total"
        assert _metric(text, counted, outcome="disclosed") == 5
        assert _metric(text, counted, reason="rate_limited") == 25
        assert _metric(text, "taxaddr_disclosures_total", agency="ICE-HSI") == 5
    assert len({e["pid"] for e in srv.requests("/metrics")}) == 2
    serve_event = next(e for e in srv.lines if e.get("event") == "serve")
    assert serve_event["workers"] == 2
    assert not Path(serve_event["state_dir"]).exists()  # removed on stop
    text = srv.stderr.decode().upper()
    assert [s for s in SEEDED_SECRETS if s.upper() in text] == []


def _fifty_against_five_over_two_workers(world: World) -> None:
    agent = world.identities.get("agent-1") or world.identity("agent-1")
    case = world.case(max_disclosures=5)
    before = tree_size(world)
    with serve(world, TAXADDR_RATE_LIMIT="0") as srv:

        def one(_: int) -> tuple[int, str]:
            with srv.client(agent) as client:
                r = client.post("/v1/disclosures", json=body(case))
            code = "" if r.status_code == 200 else r.json()["error"]["code"]
            return r.status_code, code

        with ThreadPoolExecutor(10) as pool:
            results = Counter(pool.map(one, range(50)))
        assert srv.stop() == 0
    assert results == Counter({(200, ""): 5, (403, "case_quota_exhausted"): 45})
    assert tree_size(world) == before + 50  # every answer audited, none twice
    assert len({e["pid"] for e in srv.requests("/v1/disclosures")}) == 2


def test_fifty_parallel_requests_over_two_workers_respect_the_quota_sqlite(
    world: World, agent: Identity
) -> None:
    _fifty_against_five_over_two_workers(world)


@pytest.mark.postgres
def test_fifty_parallel_requests_over_two_workers_respect_the_quota_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    # PostgreSQL: every worker decides in its threads and row locks order the writers.
    _fifty_against_five_over_two_workers(build_world(tmp_path / "pg-world", database_url=pg_url))


def test_worker_without_a_socket_is_one_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TAXADDR_WORKER_FD"}
    done = subprocess.run(
        [sys.executable, "-m", "taxaddr.api.worker"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        "taxaddr serve worker: usage_error: no socket in TAXADDR_WORKER_FD"
    ]


def test_a_worker_that_dies_stops_the_service(world: World, agent: Identity) -> None:
    with serve(world) as srv:
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
        pids = [int(p) for p in children.read_text().split()]
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        srv.proc.wait(timeout=60)
        assert srv.stop() == 1  # fails closed: no half-capacity service
    exited = next(e for e in srv.lines if e.get("event") == "worker_exited")
    assert exited["pids"] == [pids[0]]
    assert exited["returncode"] == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)  # the other worker was stopped too


def test_busy_port_is_one_clear_error(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command, env = serve_command(world, port, TAXADDR_WORKERS="2")
        done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode != 0
    err = done.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert f"cannot listen on 127.0.0.1:{port}" in err[0]
    assert "Traceback" not in done.stderr.decode()


def test_writer_queue_excludes_writers_of_other_processes(world: World) -> None:
    queue = WriterQueue(engine_for(world.settings))
    lock_path = world.settings.database_url.split("///", 1)[1] + "-writer.lock"
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )

    def other_process_gets_in() -> bool:
        done = subprocess.run([sys.executable, "-c", probe, lock_path], check=False)
        return done.returncode == 0

    with queue.turn():
        assert not other_process_gets_in()
    assert other_process_gets_in()
    queue.close()
    # the lock file holds nothing but the lock
    assert Path(lock_path).stat().st_size == 0


# -- the writer queue's deadline (issue 16 item 5) --------------------------------------------


@contextmanager
def lock_held_by_another_process(lock_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the writers' flock until its stdin is closed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
            lock_path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        yield holder
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)


def _lock_path(world: World) -> str:
    return world.settings.database_url.split("///", 1)[1] + "-writer.lock"


def _other_process_gets_in(lock_path: str) -> bool:
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, lock_path], check=False, timeout=30)
    return done.returncode == 0


def test_writer_queue_gives_up_at_its_deadline_while_another_process_holds_the_lock(
    world: World,
) -> None:
    queue = WriterQueue(engine_for(world.settings), deadline=0.3)
    try:
        with lock_held_by_another_process(_lock_path(world)):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable), queue.turn():
                pytest.fail("a turn while another process holds the lock")
            assert 0.25 <= time.monotonic() - started < 2.0
            # the holder is stuck: the next writer does not wait another deadline
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable), queue.turn():
                pytest.fail("a turn while another process holds the lock")
            assert time.monotonic() - started < 0.2
        # released: the lock that came late to nobody is not kept from other processes
        deadline = time.monotonic() + 5
        while not _other_process_gets_in(_lock_path(world)):
            assert time.monotonic() < deadline, "the late lock was never released"
            time.sleep(0.05)
        with queue.turn():
            assert not _other_process_gets_in(_lock_path(world))
    finally:
        queue.close()


def test_writer_queue_hands_over_a_contended_lock_as_soon_as_it_is_released(
    world: World,
) -> None:
    queue = WriterQueue(engine_for(world.settings), deadline=10.0)
    try:
        with lock_held_by_another_process(_lock_path(world)) as holder:
            threading.Timer(0.3, holder.stdin.close).start()  # type: ignore[union-attr]
            started = time.monotonic()
            with queue.turn():
                waited = time.monotonic() - started
                assert not _other_process_gets_in(_lock_path(world))
        assert 0.25 <= waited < 3.0  # released at 0.3 s, not after the deadline
    finally:
        queue.close()


def test_writer_queue_writers_of_this_process_also_wait_no_longer_than_the_deadline(
    world: World,
) -> None:
    queue = WriterQueue(engine_for(world.settings), deadline=0.3)
    inside, leave = threading.Event(), threading.Event()

    def long_writer() -> None:
        with queue.turn():
            inside.set()
            leave.wait(10)

    writer = threading.Thread(target=long_writer)
    writer.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable), queue.turn():
            pytest.fail("two writers of one process at once")
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        leave.set()
        writer.join(10)
        queue.close()


# -- the supervisor's watch (issue 16 item 3) ---------------------------------------------------


class _FakeSupervisor(Supervisor):
    """The real supervisor, with a stand-in for the worker program."""

    def __init__(self, script: str, **kwargs: Any) -> None:
        super().__init__("127.0.0.1", free_port(), 1, **kwargs)
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]


_BEAT_ONCE_THEN_HANG = (
    "import os, time\n"
    "os.write(int(os.environ['TAXADDR_WORKER_HEARTBEAT_FD']), b'.')\n"
    "time.sleep(60)\n"
)
_BEAT_THEN_EXIT = (
    "import os, time\n"
    "fd = int(os.environ['TAXADDR_WORKER_HEARTBEAT_FD'])\n"
    "for _ in range(15):\n"
    "    os.write(fd, b'.')\n"
    "    time.sleep(0.1)\n"
)


def test_supervisor_stops_the_service_when_replaced_workers_keep_hanging() -> None:
    supervisor = _FakeSupervisor(_BEAT_ONCE_THEN_HANG, heartbeat_timeout=0.3)
    started = time.monotonic()
    assert supervisor.run() == 1  # fails closed instead of replacing forever
    assert time.monotonic() - started < 30
    assert len(supervisor.replacements) == MAX_REPLACEMENTS + 1
    assert all(proc.poll() is not None for proc in supervisor.procs)


def test_supervisor_does_not_replace_a_worker_that_keeps_beating() -> None:
    # the control: beats every 0.1 s for 1.5 s (5x the timeout), then exits on its own
    supervisor = _FakeSupervisor(_BEAT_THEN_EXIT, heartbeat_timeout=0.3)
    assert supervisor.run() == 1  # a worker that exits stops the service, as before
    assert supervisor.replacements == []


def test_worker_whose_supervisor_is_already_gone_exits_at_once() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TAXADDR_WORKER_FD"}
    env["TAXADDR_WORKER_SUPERVISOR_PID"] = "1"  # not this worker's parent
    done = subprocess.run(
        [sys.executable, "-m", "taxaddr.api.worker"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        "taxaddr serve worker: supervisor exited before the worker started"
    ]
