"""A small mTLS client for the cluster: one connection per request, bounded load.

One connection per request (``Connection: close``), so a connection never outlives
the replica HAProxy chose for it: a drained replica gets no new requests, and a
killed one fails only the requests it held. Threads, not asyncio: the figures of the
benchmark come from bench/loadgen.py; this client is for correctness.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.cluster.cluster import REASON, STATUTE, Cluster, person


@dataclass
class Outcome:
    """One request as the client saw it: status (0 = no answer), code, leaf index."""

    started: float
    ended: float
    status: int
    code: str | None
    leaf_index: int | None
    request_id: str
    identity: str
    error: str | None = None


def disclosure_body(case_reference: str, i: int, request_id: str | None = None) -> dict[str, Any]:
    """A disclosure request for the i-th synthetic subject (a fresh request_id unless given)."""
    tin, name = person(i)
    return {
        "request_id": request_id or str(uuid.uuid4()),
        "case_reference": case_reference,
        "subject": {
            "tin": tin,
            "name": name,
            "last_known_address": {
                "street": f"{i} Main Street",
                "city": "Springfield",
                "state": "IL",
                "zip": "62701",
            },
        },
        "tax_periods": ["2024"],
        "statute": STATUTE,
        "reason": REASON,
    }


def send(
    cluster: Cluster, port: int, identity: str, body: dict[str, Any] | bytes, timeout: float = 15
) -> Outcome:
    """POST /v1/disclosures once on a new connection to ``port``."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    request_id = "" if isinstance(body, bytes) else str(body.get("request_id"))
    started = time.monotonic()
    conn = http.client.HTTPSConnection(
        "localhost", port, context=cluster.client_context(identity), timeout=timeout
    )
    try:
        conn.request(
            "POST",
            "/v1/disclosures",
            body=payload,
            headers={"content-type": "application/json", "connection": "close"},
        )
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return Outcome(started, time.monotonic(), 0, None, None, request_id, identity,
                       error=type(exc).__name__)  # fmt: skip
    finally:
        conn.close()
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {}
    code = answer.get("error", {}).get("code") if isinstance(answer.get("error"), dict) else None
    code = code or answer.get("code") or answer.get("outcome")
    leaf = (
        answer.get("audit", {}).get("leaf_index") if isinstance(answer.get("audit"), dict) else None
    )
    if leaf is None:
        leaf = answer.get("leaf_index")
    return Outcome(started, time.monotonic(), status, code, leaf, request_id, identity)


def run_load(
    cluster: Cluster,
    *,
    port: int,
    case_reference: str,
    threads: int,
    duration: float | None = None,
    requests: int | None = None,
    subjects: int = 50,
    during: Callable[[], None] | None = None,
    pause: float = 0.0,
    identities: list[str] | None = None,
) -> list[Outcome]:
    """``threads`` clients (identities round-robin) sending disclosures until ``duration``
    seconds passed or ``requests`` were sent; ``during`` runs in this thread meanwhile."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()
    sent = [0]
    deadline = time.monotonic() + duration if duration is not None else None
    barrier = threading.Barrier(threads)

    def client(n: int) -> None:
        pool = identities or cluster.state.ids
        identity = pool[n % len(pool)]
        rng = random.Random(n)
        barrier.wait()
        while not stop.is_set():
            with lock:
                if requests is not None and sent[0] >= requests:
                    return
                sent[0] += 1
            if deadline is not None and time.monotonic() >= deadline:
                return
            outcome = send(
                cluster, port, identity, disclosure_body(case_reference, rng.randrange(subjects))
            )
            with lock:
                outcomes.append(outcome)
            if pause:
                time.sleep(pause)

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    try:
        if during is not None:
            during()
    finally:
        for w in workers:
            w.join(timeout=(duration or 60) + 60)
        stop.set()
    return outcomes
