"""Benchmark: /healthz latency while clients flood unfinished request headers (issue 16).

Builds a small throwaway world (dev keys, SQLite, a few registered requester
certificates), starts ``taxaddr serve`` with default settings in its own process
on 127.0.0.1 (one worker per core), then, on the same server:

  1. quiet: ``--probes`` keep-alive mTLS connections request /healthz at a paced
     ``--rate`` (per second, all connections together) for ``--duration`` seconds;
  2. flood: the same, while ``--flooders`` connections (one certificate from the
     client CA that is NOT registered: any holder of such a certificate can do this)
     each send up to ``--flood-mib`` MiB of one never-finished header line, as fast
     as the server reads it; a flooder whose connection is closed opens a new one
     and starts again until the phase ends.

Latency is measured from each request's scheduled time (no coordinated omission);
a request unanswered after ``--timeout`` seconds counts as that long and its
connection is replaced. Also reported: the workers' peak RSS during each phase and
what the flooders managed to send. The figure to compare is the ratio of the
flood phase's p99 to the quiet phase's, in the same run.

"Before" figures: run this same script with the service code of an older commit
first on the path, e.g.
  git worktree add /tmp/old <commit>
  PYTHONPATH=/tmp/old/service .venv/bin/python bench/bench_header_flood.py
(the server process inherits PYTHONPATH). Bounded: 127.0.0.1 only, fixed
durations, every socket with a timeout.

Run: .venv/bin/python bench/bench_header_flood.py [--duration 10] [--flooders 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

import bench_api

HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick  # noqa: E402


def client_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return ctx


# -- the probe: paced /healthz over keep-alive connections -----------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            await reader.readexactly(int(line[15:]))
            break
    return status


async def _probe(
    port: int, ctx: ssl.SSLContext, *, connections: int, rate: float, duration: float,
    timeout: float,
) -> dict[str, Any]:  # fmt: skip
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    interval = connections / rate
    start = loop.time() + 0.5
    stop = start + duration

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), timeout)

    async def drive(n: int) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        next_at = start + (n / connections) * interval
        while next_at < stop:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled, next_at = next_at, next_at + interval
            try:
                if conn is None:
                    conn = await connect()
                conn[1].write(HEALTHZ)
                remaining = max(0.01, scheduled + timeout - loop.time())
                status = await asyncio.wait_for(_read_response(conn[0]), remaining)
                key = str(status)
                latencies.append(loop.time() - scheduled)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
                key = "timeout_or_error"
                latencies.append(max(timeout, loop.time() - scheduled))
                if conn is not None:
                    conn[1].close()
                conn = None
            statuses[key] = statuses.get(key, 0) + 1
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(drive(n) for n in range(connections)))
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "statuses": statuses,
        "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
        "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1000, 2) if lat else None,
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
    }


# -- the flood: unfinished headers, in a process of its own -------------------------------


def _flood_one(
    port: int, ctx: ssl.SSLContext, mib: int, stop_at: float, out: dict[str, int]
) -> None:
    chunk = b"a" * 65536
    limit = mib * 1024 * 1024
    while time.monotonic() < stop_at:
        sent = 0
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                out["connections"] += 1
                tls.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-flood: ")
                while sent < limit and time.monotonic() < stop_at:
                    tls.sendall(chunk)
                    sent += len(chunk)
                if sent >= limit:
                    out["full_floods"] += 1
                    # the whole 64 MiB went in: hold the connection open, unfinished
                    tls.settimeout(max(0.1, stop_at - time.monotonic()))
                    tls.recv(1)
        except (OSError, ssl.SSLError):
            out["closed_by_server"] += 1
            time.sleep(0.01)
        finally:
            out["bytes"] += sent


def _flood(port: int, creds: tuple[str, str, str], shape: tuple[int, int, float],
           result: Any) -> None:  # fmt: skip
    """``shape``: (connections, MiB each, seconds)."""
    n, mib, seconds = shape
    ctx = client_context(*creds)
    stop_at = time.monotonic() + seconds
    outs = [
        {"connections": 0, "full_floods": 0, "closed_by_server": 0, "bytes": 0} for _ in range(n)
    ]
    threads = [
        threading.Thread(target=_flood_one, args=(port, ctx, mib, stop_at, out), daemon=True)
        for out in outs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    result.put({k: sum(o[k] for o in outs) for k in outs[0]})


# -- the server ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Peak RSS of the server's workers, sampled every 0.1 s."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            pids = _children(self.server_pid) or [self.server_pid]
            self.peak = max(self.peak, *(_rss_mib(p) for p in pids))


def phase(args: argparse.Namespace, port: int, server_pid: int, world: dict[str, Any],
          flood: bool) -> dict[str, Any]:  # fmt: skip
    rid = world["ids"][0]
    probe_ctx = client_context(world["ca"], f"{world['certs']}/{rid}.crt",
                               f"{world['certs']}/{rid}.key")  # fmt: skip
    sampler = RssSampler(server_pid)
    sampler.start()
    flooder = None
    results: Any = multiprocessing.get_context("spawn").Queue()
    if flood:
        flooder = multiprocessing.get_context("spawn").Process(
            target=_flood,
            args=(port, (world["ca"], world["flood_cert"], world["flood_key"]),
                  (args.flooders, args.flood_mib, args.duration + 1.0), results),
            daemon=True,
        )  # fmt: skip
        flooder.start()
        time.sleep(0.5)  # the flood is under way before the first probe
    probe = asyncio.run(
        _probe(port, probe_ctx, connections=args.probes, rate=args.rate,
               duration=args.duration, timeout=args.timeout)
    )  # fmt: skip
    out: dict[str, Any] = {"phase": "flood" if flood else "quiet", **probe}
    if flooder is not None:
        try:
            out["flood"] = results.get(timeout=args.duration + 30)
        except Exception:  # a flood process that died: report it
            out["flood"] = "no result"
        flooder.join(10)
        if flooder.is_alive():
            flooder.kill()
    sampler.done.set()
    sampler.join()
    out["workers_peak_rss_mib"] = round(sampler.peak, 1)
    out["workers_alive"] = len(_children(server_pid))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--probes", type=int, default=8, help="probe connections")
    parser.add_argument("--rate", type=float, default=100.0, help="probe requests per second")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--flooders", type=int, default=10)
    parser.add_argument("--flood-mib", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the world directory")
    args = parser.parse_args()
    if quick():
        args.duration = min(args.duration, 4.0)

    root = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    proc = None
    try:
        world = bench_api.build(root, records=50, cases=1, per_case=10, identities=2)
        from taxaddr.crypto import pki
        from taxaddr.crypto.keystore import FileKeyStore

        unregistered = pki.issue_cert(
            FileKeyStore(Path(world["env"]["TAXADDR_KEYS_DIR"])).files.client_ca(), "flooder",
            server=False,
        )  # fmt: skip
        world["flood_cert"] = str(root / "certs" / "flooder.crt")
        world["flood_key"] = str(root / "certs" / "flooder.key")
        Path(world["flood_cert"]).write_bytes(unregistered.cert_pem())
        Path(world["flood_key"]).write_bytes(unregistered.key_pem())

        port = bench_api.free_port()
        env = {**os.environ, **world["env"]}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        exe = str(Path(sys.executable).parent / "taxaddr")
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rid = world["ids"][0]
        ctx = client_context(world["ca"], f"{world['certs']}/{rid}.crt",
                             f"{world['certs']}/{rid}.key")  # fmt: skip
        for _ in range(300):
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls,
                ):
                    tls.sendall(HEALTHZ)
                    if tls.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                time.sleep(0.2)
        time.sleep(2.0)  # every worker up
        import taxaddr

        print(f"service code: {Path(taxaddr.__file__).parent}")
        print(f"workers: {_children(proc.pid)}")
        results = [phase(args, port, proc.pid, world, flood) for flood in (False, True)]
        for r in results:
            print(json.dumps(r))
        quiet, flooded = results
        if quiet["p99_ms"] and flooded["p99_ms"]:
            print(f"/healthz p99 under flood / quiet: {flooded['p99_ms'] / quiet['p99_ms']:.2f}x "
                  f"({quiet['p99_ms']} ms -> {flooded['p99_ms']} ms)")  # fmt: skip
            emit("/healthz p99 under a slow-header flood", flooded["p99_ms"], "ms",
                 limit="(reported)", baseline="/healthz p99 quiet",
                 baseline_value=quiet["p99_ms"])  # fmt: skip
    finally:
        if proc is not None and proc.poll() is None:
            workers = _children(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            for pid in workers:  # older code left workers behind a killed supervisor
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
