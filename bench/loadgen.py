"""A lean, bounded HTTP/1.1 load generator over mTLS keep-alive connections (127.0.0.1 only).

The server is what is measured, so the client must cost little: one asyncio
process, raw TLS streams, requests pre-encoded as bytes, responses parsed only as
far as the status line and ``Content-Length``. A full HTTP client (httpx) spends
several times the server's own cost per ``/healthz`` request and would cap the
baseline rather than measure it.

Closed loop (``rate=None``): each connection sends its next request as soon as the
answer to the previous one arrived. Paced (``rate``): requests are scheduled at
fixed intervals per connection, and latency is measured from the scheduled time,
so a slow answer is not hidden by the delayed next send (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RequestFactory = Callable[[int], bytes]  # connection number -> one encoded request


@dataclass
class Connection:
    """Where one connection goes and as whom."""

    host: str
    port: int
    ctx: ssl.SSLContext


@dataclass
class PhaseResult:
    mode: str
    duration: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        total = len(lat)
        return {
            "mode": self.mode,
            "requests": total,
            "per_second": total / self.duration,
            "statuses": dict(sorted(self.statuses.items())),
            "p50_ms": statistics.median(lat) * 1000 if lat else None,
            "p99_ms": lat[int(0.99 * (total - 1))] * 1000 if lat else None,
        }


def http_request(method: str, path: str, body: bytes = b"", host: str = "127.0.0.1") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: {host}\r\n"
    if body or method == "POST":
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _run(
    conns: Sequence[Connection],
    make_request: RequestFactory,
    *,
    mode: str,
    duration: float,
    rate: float | None,
) -> PhaseResult:
    result = PhaseResult(mode=mode, duration=duration)
    opened = []
    for c in conns:  # handshake before the clock starts
        reader, writer = await asyncio.open_connection(c.host, c.port, ssl=c.ctx)
        opened.append((reader, writer))
    interval = len(conns) / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    stop = start + duration

    async def drive(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        next_at = start + (n / len(conns)) * interval
        while True:
            if interval:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = next_at
                next_at += interval
            else:
                t0 = loop.time()
                if t0 < start:
                    await asyncio.sleep(start - t0)
                    t0 = loop.time()
            if t0 >= stop:
                break
            writer.write(make_request(n))
            status = await _read_response(reader)
            result.latencies.append(loop.time() - t0)
            result.statuses[status] = result.statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(drive(n, r, w) for n, (r, w) in enumerate(opened)))
    finally:
        for _, writer in opened:
            writer.close()
    return result


def run(
    conns: Sequence[Connection],
    make_request: RequestFactory,
    *,
    mode: str,
    duration: float,
    rate: float | None = None,
) -> PhaseResult:
    """One phase: ``len(conns)`` keep-alive connections for ``duration`` seconds."""
    return asyncio.run(_run(conns, make_request, mode=mode, duration=duration, rate=rate))


def process_cpu_seconds(pid: int, *, system_only: bool = False) -> float:
    """User + system (or only system) CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    if system_only:
        return int(fields[12]) / ticks
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (a pre-forking server)."""
    total = process_cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = fh.read().split()
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_cpu_seconds(int(child))
        except OSError:
            continue
    return total


def children_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each live child of ``pid`` (the workers of a pre-forking server)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = [int(c) for c in fh.read().split()]
    except OSError:
        return {}
    out = {}
    for child in children:
        try:
            out[child] = process_cpu_seconds(child)
        except OSError:
            continue
    return out
