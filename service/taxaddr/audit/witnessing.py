"""The log's side of witnessing: send checkpoints to witnesses, keep their cosignatures.

Every ``TAXADDR_CHECKPOINT_INTERVAL`` seconds, and only when the tree grew, the latest
signed checkpoint goes to each witness of ``TAXADDR_WITNESSES`` with the RFC 6962
consistency proof from the size that witness last cosigned (C2SP tlog-witness
``add-checkpoint``). A 409 tells the witness's size: the request is made once more
from there. A returned cosignature is kept only if it verifies under that witness's
vkey. Witnesses that are down, slow or refusing never block a disclosure: this runs
on its own thread with bounded timeouts, and what it cannot get it logs.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session

from taxaddr.audit.checkpoint import CheckpointError, parse_body
from taxaddr.audit.cosignature import Cosigner, note_body
from taxaddr.audit.cosignature import parse_vkey as parse_cosigner_vkey
from taxaddr.audit.service import consistency_proof, latest_checkpoint, tree_size
from taxaddr.config import Settings
from taxaddr.crypto.keystore import KeyStore
from taxaddr.db.repositories import witnesses as witness_repo
from taxaddr.errors import ConfigError

LOG = logging.getLogger("taxaddr.witnessing")
SIZE_TYPE = "text/x.tlog.size"
TIMEOUT_SECONDS = 5.0
"""Per network operation (connect, each read, each write)."""
TOTAL_SECONDS = 10.0
"""Per request, whole answer included: a witness trickling bytes cannot hold a round."""
MAX_ANSWER_BYTES = 64 * 1024
"""A cosignature answer is a few signature lines; anything longer is refused unread."""


class _AnswerTooLong(Exception):
    pass


@dataclass(frozen=True)
class WitnessEndpoint:
    cosigner: Cosigner
    url: str  # the submission prefix; the request goes to <url>/add-checkpoint


def parse_witnesses(text: str) -> list[WitnessEndpoint]:
    """``TAXADDR_WITNESSES``: a JSON list of ``{"vkey", "url"}``."""
    problem = "TAXADDR_WITNESSES must be a JSON list of {vkey, url}"
    try:
        raw = json.loads(text)
    except ValueError:
        raise ConfigError(problem) from None
    if not isinstance(raw, list):
        raise ConfigError(problem)
    try:
        endpoints = [
            WitnessEndpoint(parse_cosigner_vkey(str(item["vkey"])), str(item["url"]).rstrip("/"))
            for item in raw
        ]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{problem} ({type(exc).__name__})") from None
    except CheckpointError as exc:
        raise ConfigError(f"{problem} ({exc.message})") from None
    names = [e.cosigner.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError("TAXADDR_WITNESSES names a witness twice")
    keys = [e.cosigner.raw_key for e in endpoints]
    if len(set(keys)) != len(keys):
        # cosignature/v1 does not commit to the name: one key under two names would
        # count twice toward TAXADDR_WITNESS_QUORUM
        raise ConfigError("TAXADDR_WITNESSES gives one witness key under two names")
    return endpoints


def request_body(old_size: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class WitnessClient:
    """Submits checkpoints; remembers each witness's last cosigned size (per process)."""

    def __init__(
        self,
        endpoints: list[WitnessEndpoint],
        timeout: float = TIMEOUT_SECONDS,
        total: float = TOTAL_SECONDS,
    ):
        self.endpoints = endpoints
        self._known: dict[str, int] = {}
        self._http = httpx.Client(timeout=timeout)
        self._total = total

    def _post(self, url: str, body: bytes) -> tuple[int, str | None, str]:
        """Status, content type and text of the answer, read within :data:`TOTAL_SECONDS`
        (each read also within the per-operation timeout) and at most
        :data:`MAX_ANSWER_BYTES`; raises ``httpx.HTTPError`` or :class:`_AnswerTooLong`."""
        deadline = time.monotonic() + self._total
        with self._http.stream("POST", url, content=body) as answer:
            data = bytearray()
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES or time.monotonic() > deadline:
                    raise _AnswerTooLong
            return (
                answer.status_code,
                answer.headers.get("content-type"),
                data.decode("utf-8", "replace"),
            )

    def close(self) -> None:
        self._http.close()

    def cosign(
        self, endpoint: WitnessEndpoint, note: str, proof_from: Callable[[int], list[bytes]]
    ) -> tuple[str, int] | None:
        """The witness's verified cosignature line and its timestamp, or None."""
        size = parse_body(note_body(note)).tree_size
        old = self._known.get(endpoint.cosigner.name, 0)
        for _attempt in range(2):
            old = min(old, size)
            body = request_body(old, proof_from(old) if 0 < old < size else [], note)
            try:
                status, content_type, text = self._post(endpoint.url + "/add-checkpoint", body)
            except (httpx.HTTPError, _AnswerTooLong) as exc:
                LOG.warning(
                    "witness %s unreachable or answered too long or too slowly: %s",
                    endpoint.cosigner.name,
                    type(exc).__name__,
                )
                return None
            if status == 409 and content_type == SIZE_TYPE:
                try:
                    witness_size = int(text.strip())
                except ValueError:
                    return None
                if witness_size > size or witness_size == old:
                    # it cosigned a larger tree, or a different one of this size: a fork?
                    LOG.error(
                        "witness %s refuses (its size %d)", endpoint.cosigner.name, witness_size
                    )
                    return None
                old = witness_size
                continue
            if status != 200:
                LOG.warning("witness %s answered %d", endpoint.cosigner.name, status)
                return None
            return self._accept(endpoint, note, size, text)
        return None

    def _accept(
        self, endpoint: WitnessEndpoint, note: str, size: int, text: str
    ) -> tuple[str, int] | None:
        body = note_body(note)
        for line in text.split("\n"):
            try:
                timestamp = endpoint.cosigner.verify(body, line)
            except CheckpointError:
                LOG.warning("witness %s sent an invalid cosignature", endpoint.cosigner.name)
                return None
            if timestamp is not None:
                self._known[endpoint.cosigner.name] = size
                return line, timestamp
        return None


def witness_round(
    write: Callable[[], AbstractContextManager[Session]],
    read: Callable[[], AbstractContextManager[Session]],
    keystore: KeyStore,
    settings: Settings,
    client: WitnessClient,
) -> int:
    """One round: the latest checkpoint to every witness that has not cosigned it yet;
    returns how many witnesses still lack a cosignature of it (0: the round is complete)."""
    with write() as session:
        note = latest_checkpoint(session, keystore, settings)
    size = parse_body(note_body(note)).tree_size
    with read() as session:
        have = witness_repo.cosigners_of(session, size)

    def proof_from(old: int) -> list[bytes]:
        with read() as session:
            return consistency_proof(session, old, size)

    missing = 0
    for endpoint in client.endpoints:
        if endpoint.cosigner.name in have:
            continue
        got = client.cosign(endpoint, note, proof_from)
        if got is None:
            missing += 1
            continue
        with write() as session:
            witness_repo.add_cosignature(session, size, endpoint.cosigner.name, *got)
    return missing


def cosigned_note(session: Session, note: str) -> str:
    """The log-signed checkpoint with every cosignature collected for its size."""
    size = parse_body(note_body(note)).tree_size
    lines = witness_repo.cosignature_lines(session, size)
    return note + "".join(line + "\n" for line in lines)


class WitnessLoop:
    """The background thread: a round every ``interval`` seconds when the tree grew, or
    while a witness that was down, slow or refusing still lacks the latest checkpoint
    (so a quorum is reached once it is back, without waiting for the next leaf).

    ``round_`` returns how many witnesses still lack a cosignature (0: complete)."""

    def __init__(self, round_: Callable[[], int], size: Callable[[], int], interval: float):
        self._round, self._size, self._interval = round_, size, interval
        self._stop = threading.Event()
        self._last = -1
        self._pending = False
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name="taxaddr-witness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()

    def tick(self) -> None:
        """One scheduling decision (the thread calls it once per interval)."""
        try:
            current = self._size()
            if current != self._last or self._pending:
                self.rounds += 1
                self._pending = self._round() > 0
                self._last = current
        except Exception:  # a round must never take the server down
            self._pending = True
            LOG.exception("witness round failed")


def current_size(read: Callable[[], AbstractContextManager[Session]]) -> int:
    with read() as session:
        return tree_size(session)
