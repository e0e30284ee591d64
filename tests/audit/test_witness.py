"""The witness (C2SP tlog-witness, tlog-cosignature/v1): every check of add-checkpoint
with its status code, hostile bodies, atomic persistent state, real HTTP.

Cosignatures are verified here by code written from the spec (struct layout, key ID,
signed message), not by the service's own verifier."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from taxaddr.audit import merkle
from taxaddr.audit.checkpoint import Checkpoint, Verifier, sign_checkpoint
from taxaddr.audit.cosignature import CosignerKey, parse_vkey
from taxaddr.errors import UsageError
from taxaddr.witness.protocol import add_checkpoint
from taxaddr.witness.state import WitnessState
from tests.pg import free_port

ORIGIN = "irs.example/taxaddr/audit"
NOW = 1_767_225_600


def _leaves(n: int, tag: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(tag + b"leaf %d" % i) for i in range(n)]


class Log:
    """A tiny log: leaf hashes, signed checkpoints, proofs (what the service serves)."""

    def __init__(self, key: Ed25519PrivateKey | None = None, tag: bytes = b"") -> None:
        self.key = key or Ed25519PrivateKey.generate()
        self.tag = tag
        self.verifier = Verifier.from_public_key(ORIGIN, self.key.public_key())

    def note(self, size: int) -> str:
        root = merkle.root(_leaves(size, self.tag))
        return sign_checkpoint(Checkpoint(ORIGIN, size, root), self.key, ORIGIN)

    def proof(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        return merkle.consistency_proof(_leaves(new, self.tag), old, new)

    def request(self, old: int, new: int, proof: list[bytes] | None = None) -> bytes:
        lines = [f"old {old}"] + [
            base64.b64encode(h).decode() for h in (self.proof(old, new) if proof is None else proof)
        ]
        return ("\n".join(lines) + "\n\n" + self.note(new)).encode()


@pytest.fixture
def key() -> CosignerKey:
    return CosignerKey.generate("tigta.example/w1")


@pytest.fixture
def state(tmp_path: Path) -> WitnessState:
    s = WitnessState(tmp_path / "state.json")
    yield s
    s.close()


def _verify_independently(note_body: str, line: str, public: Ed25519PublicKey, name: str) -> int:
    """tlog-cosignature/v1 from the spec: '— name base64(keyid||u64 ts||sig)'."""
    dash, got_name, blob64 = line.rstrip("\n").split(" ")
    assert dash == "\u2014"
    assert got_name == name
    blob = base64.b64decode(blob64)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n\x04" + raw).digest()[:4]
    (timestamp,) = struct.unpack(">Q", blob[4:12])
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + note_body.encode()
    public.verify(blob[12:], message)
    return int(timestamp)


def _body_of(note: str) -> str:
    return note.split("\n\n", maxsplit=1)[0] + "\n"


def test_first_checkpoint_is_cosigned_and_remembered(
    key: CosignerKey, state: WitnessState, tmp_path: Path
) -> None:
    log = Log()
    answer = add_checkpoint(log.request(0, 5), {ORIGIN: [log.verifier]}, state, key, NOW)
    assert answer.status == 200, answer.body
    line = answer.body.decode()
    assert line.endswith("\n")
    ts = _verify_independently(_body_of(log.note(5)), line, key.private_key.public_key(), key.name)
    assert ts == NOW
    assert key.cosigner.verify(_body_of(log.note(5)), line.rstrip("\n")) == NOW
    state.close()
    reopened = WitnessState(tmp_path / "state.json")  # survives a restart
    remembered = reopened.get(ORIGIN)
    assert remembered is not None
    assert (remembered.size, remembered.root_hash) == (5, merkle.root(_leaves(5)))
    reopened.close()
    os.chmod(tmp_path / "state.json", 0o600)


def test_growth_with_a_consistency_proof(key: CosignerKey, state: WitnessState) -> None:
    log = Log()
    logs = {ORIGIN: [log.verifier]}
    assert add_checkpoint(log.request(0, 7), logs, state, key, NOW).status == 200
    for old, new in ((7, 8), (8, 8), (8, 1000), (1000, 1025)):
        answer = add_checkpoint(log.request(old, new), logs, state, key, NOW)
        assert answer.status == 200, (old, new, answer.body)


def test_a_stale_old_size_is_409_with_the_witness_size(
    key: CosignerKey, state: WitnessState
) -> None:
    log = Log()
    logs = {ORIGIN: [log.verifier]}
    assert add_checkpoint(log.request(0, 10), logs, state, key, NOW).status == 200
    answer = add_checkpoint(log.request(0, 12), logs, state, key, NOW)
    assert (answer.status, answer.body, answer.content_type) == (409, b"10\n", "text/x.tlog.size")
    assert add_checkpoint(log.request(10, 12), logs, state, key, NOW).status == 200


def test_a_fork_and_a_rollback_are_refused(key: CosignerKey, state: WitnessState) -> None:
    honest, forked = Log(), Log(tag=b"rewritten ")
    forked.key = honest.key  # the operator re-signs another history with the same key
    logs = {ORIGIN: [honest.verifier]}
    assert add_checkpoint(honest.request(0, 16), logs, state, key, NOW).status == 200
    same_size = add_checkpoint(forked.request(16, 16), logs, state, key, NOW)
    assert (same_size.status, same_size.body) == (409, b"16\n")
    # a longer forked history: its proof cannot connect to the cosigned root
    longer = add_checkpoint(forked.request(16, 20), logs, state, key, NOW)
    assert longer.status == 422
    rollback = add_checkpoint(honest.request(16, 8, []), logs, state, key, NOW)
    assert rollback.status == 400  # old size larger than the checkpoint's
    smaller = add_checkpoint(honest.request(0, 8), logs, state, key, NOW)
    assert (smaller.status, smaller.body) == (409, b"16\n")
    remembered = state.get(ORIGIN)
    assert remembered is not None
    assert remembered.size == 16


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"old 0\n", 400),  # no empty line
        (b"old 01\n\nx\n", 400),  # leading zero
        (b"old -1\n\nx\n", 400),
        (b"new 0\n\nx\n", 400),
        (b"old 0\n\nnot a checkpoint\n", 400),
        (b"old 0\n" + b"AAAA\n" + b"\n", 400),  # a proof line that is not a 32-byte hash
        (b"old 0\n" + b"%%%%\n" + b"\n", 400),
        (b"\xff\xfe", 400),
        (b"old 0\n" + b"A" * 70_000 + b"\n\n", 400),
    ],
)
def test_malformed_requests_are_400(
    key: CosignerKey, state: WitnessState, body: bytes, status: int
) -> None:
    log = Log()
    answer = add_checkpoint(body, {ORIGIN: [log.verifier]}, state, key, NOW)
    assert answer.status == status, answer.body
    assert state.get(ORIGIN) is None


def test_more_than_63_proof_lines_is_400(key: CosignerKey, state: WitnessState) -> None:
    log = Log()
    proof = [merkle.leaf_hash(b"x")] * 64
    answer = add_checkpoint(log.request(3, 9, proof), {ORIGIN: [log.verifier]}, state, key, NOW)
    assert answer.status == 400


def test_unknown_origin_404_and_unknown_key_403(key: CosignerKey, state: WitnessState) -> None:
    log, stranger = Log(), Log()
    assert add_checkpoint(log.request(0, 3), {}, state, key, NOW).status == 404
    forged = add_checkpoint(stranger.request(0, 3), {ORIGIN: [log.verifier]}, state, key, NOW)
    assert forged.status == 403
    assert state.get(ORIGIN) is None


def test_a_bad_proof_is_422_and_a_proof_from_zero_must_be_empty(
    key: CosignerKey, state: WitnessState
) -> None:
    log = Log()
    logs = {ORIGIN: [log.verifier]}
    assert (
        add_checkpoint(log.request(0, 0, [merkle.leaf_hash(b"x")]), logs, state, key, NOW).status
        == 422
    )
    assert add_checkpoint(log.request(0, 6), logs, state, key, NOW).status == 200
    bad = [bytes(32)] * len(log.proof(6, 9))
    assert add_checkpoint(log.request(6, 9, bad), logs, state, key, NOW).status == 422
    assert add_checkpoint(log.request(6, 9, []), logs, state, key, NOW).status == 422


def test_concurrent_submissions_cannot_roll_the_witness_back(
    key: CosignerKey, state: WitnessState
) -> None:
    log = Log()
    logs = {ORIGIN: [log.verifier]}
    assert add_checkpoint(log.request(0, 4), logs, state, key, NOW).status == 200
    requests = [log.request(4, n) for n in (5, 9, 30, 100, 64, 17)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda b: add_checkpoint(b, logs, state, key, NOW), requests))
    assert sorted(a.status for a in answers) == [200, 409, 409, 409, 409, 409]
    winner = next(
        n for n, a in zip((5, 9, 30, 100, 64, 17), answers, strict=True) if a.status == 200
    )
    remembered = state.get(ORIGIN)
    assert remembered is not None
    assert remembered.size == winner


def test_one_state_file_one_witness_process(tmp_path: Path) -> None:
    first = WitnessState(tmp_path / "s.json")
    try:
        with pytest.raises(UsageError, match="another witness process"):
            WitnessState(tmp_path / "s.json")
    finally:
        first.close()


def test_keys_round_trip_and_vkeys_check_their_id(key: CosignerKey) -> None:
    again = CosignerKey.from_private_text(key.private_text())
    assert again.cosigner.vkey() == key.cosigner.vkey()
    parsed = parse_vkey(key.cosigner.vkey())
    assert parsed.key_id == key.cosigner.key_id
    name, _key_id, blob = key.cosigner.vkey().split("+", 2)
    assert base64.b64decode(blob)[0] == 0x04
    from taxaddr.audit.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="key ID"):
        parse_vkey(f"{name}+00000000+{blob}")
    with pytest.raises(CheckpointError, match="0x04"):
        parse_vkey(Log().verifier.vkey())  # a log's signing vkey (type 0x01) is not a cosigner
    with pytest.raises(CheckpointError):
        CosignerKey.generate("has space")


# -- the CLI and real HTTP ------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from taxaddr.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_keygen_and_serve_over_http(tmp_path: Path) -> None:
    made = _cli("witness", "keygen", "--name", "jct.example/w", "--out", "w", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    vkey = made.stdout.strip()
    assert (tmp_path / "w" / "witness.vkey").read_text().strip() == vkey
    assert (tmp_path / "w" / "witness.key").stat().st_mode & 0o777 == 0o600
    again = _cli("witness", "keygen", "--name", "jct.example/w", "--out", "w", cwd=tmp_path)
    assert again.returncode != 0
    assert again.stderr.count("\n") == 1

    log = Log()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from taxaddr.cli import main; main()",
            "witness",
            "serve",
            "--key",
            "w/witness.key",
            "--log-vkey",
            log.verifier.vkey(),
            "--state",
            "w/state.json",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/add-checkpoint", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "witness did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ok = client.post("/add-checkpoint", content=log.request(0, 3))
            assert ok.status_code == 200, ok.text
            cosigner = parse_vkey(vkey)
            assert cosigner.verify(_body_of(log.note(3)), ok.text.rstrip("\n")) is not None
            stale = client.post("/add-checkpoint", content=log.request(0, 4))
            assert stale.status_code == 409
            assert stale.headers["content-type"] == "text/x.tlog.size"
            assert stale.text == "3\n"
            assert client.get("/add-checkpoint").status_code == 405
            assert client.post("/elsewhere", content=b"x").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_plain_http_beyond_loopback(tmp_path: Path) -> None:
    assert _cli("witness", "keygen", "--name", "w", "--out", "w", cwd=tmp_path).returncode == 0
    vkey = Log().verifier.vkey()
    args = ["--state", "s.json", "--port", "1", "--host", "0.0.0.0"]
    result = _cli(
        "witness", "serve", "--key", "w/witness.key", "--log-vkey", vkey, *args, cwd=tmp_path
    )
    assert result.returncode != 0
    assert "loopback" in result.stderr
    assert "Traceback" not in result.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "w.crt", tmp_path / "w.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_silent_tls_client_does_not_stall_the_witness(
    tmp_path: Path, key: CosignerKey, state: WitnessState
) -> None:
    """A connection that never sends its ClientHello once blocked the accept loop (the
    handshake ran there, without a timeout): every other log's request then hung."""
    import socket
    import ssl
    import threading

    from taxaddr.witness.server import Witness, make_tls_server

    cert, tls_key = _self_signed(tmp_path)
    log = Log()
    server = make_tls_server(
        Witness(key, {ORIGIN: [log.verifier]}, state), "127.0.0.1", 0, cert=cert, key=tls_key
    )
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    silent = socket.create_connection(("127.0.0.1", port))
    try:
        time.sleep(0.2)  # the silent connection is accepted first
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=5) as client:
            answer = client.post(
                f"https://127.0.0.1:{port}/add-checkpoint", content=log.request(0, 2)
            )
        assert answer.status_code == 200, answer.text
    finally:
        silent.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_serve_takes_a_loopback_host_name(tmp_path: Path) -> None:
    from taxaddr.witness.server import _is_loopback

    assert _is_loopback("localhost")
    assert _is_loopback("::1")
    assert not _is_loopback("0.0.0.0")
    with pytest.raises(UsageError):
        _is_loopback("no-such-host.invalid")


def test_unread_bodies_close_the_connection_and_short_bodies_are_dropped(
    key: CosignerKey, state: WitnessState, capfd: pytest.CaptureFixture[str]
) -> None:
    """On a kept-alive connection, a body the witness did not read must not be parsed as
    the next request; a body shorter than its Content-Length is dropped without a
    traceback once the connection's timeout passes."""
    import socket
    import threading

    from taxaddr.witness import server as witness_server

    log = Log()
    srv = witness_server.make_server(
        witness_server.Witness(key, {ORIGIN: [log.verifier]}, state), "127.0.0.1", 0
    )
    port = srv.server_address[1]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    smuggled = b"GET /add-checkpoint HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        for path in ("/elsewhere", "/add-checkpoint"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                length = len(smuggled) if path == "/elsewhere" else 10**6
                conn.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
                    + smuggled
                )
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
            assert received.count(b"HTTP/1.1 ") == 1, received  # no answer to the smuggled GET
            assert b"Connection: close" in received
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /add-checkpoint HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nold"
            )
            conn.shutdown(socket.SHUT_WR)  # the rest of the body never comes
            assert conn.recv(65536) == b""  # closed without an answer
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.post("/add-checkpoint", content=log.request(0, 2)).status_code == 200
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
    assert "Traceback" not in capfd.readouterr().err


def test_with_a_client_ca_the_witness_requires_a_client_certificate(
    tmp_path: Path, key: CosignerKey, state: WitnessState
) -> None:
    """mTLS: the handshake (now in the connection's thread) still refuses a client
    without a certificate from the given CA, and serves one with it."""
    import ssl
    import threading

    from taxaddr.witness.server import Witness, make_tls_server

    cert, tls_key = _self_signed(tmp_path)
    log = Log()
    server = make_tls_server(
        Witness(key, {ORIGIN: [log.verifier]}, state),
        "127.0.0.1",
        0,
        cert=cert,
        key=tls_key,
        client_ca=cert,
    )
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}/add-checkpoint"
    try:
        anonymous = ssl.create_default_context(cafile=str(cert))
        with pytest.raises(httpx.TransportError), httpx.Client(verify=anonymous, timeout=5) as c:
            c.post(url, content=log.request(0, 2))
        holder = ssl.create_default_context(cafile=str(cert))
        holder.load_cert_chain(str(cert), str(tls_key))
        with httpx.Client(verify=holder, timeout=5) as client:
            assert client.post(url, content=log.request(0, 2)).status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_connections_over_the_bound_are_closed_and_the_witness_recovers(
    key: CosignerKey, state: WitnessState
) -> None:
    """Silent connections hold at most ``max_connections`` threads; one more is closed
    at once, and once they go the witness answers again."""
    import socket
    import threading

    from taxaddr.witness import server as witness_server

    log = Log()
    srv = witness_server.make_server(
        witness_server.Witness(key, {ORIGIN: [log.verifier]}, state),
        "127.0.0.1",
        0,
        max_connections=2,
    )
    port = srv.server_address[1]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        deadline = time.monotonic() + 5
        while srv._slots._value > 0 and time.monotonic() < deadline:  # both accepted
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            assert extra.recv(1) == b""  # closed unanswered, at once
        assert srv.refused == 1
        for conn in silent:
            conn.close()
        deadline = time.monotonic() + 5
        while srv._slots._value < 2 and time.monotonic() < deadline:  # threads ended
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.post("/add-checkpoint", content=log.request(0, 2)).status_code == 200
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)
