"""The log's witness schedule: a round only when the tree grew, or while a witness still
lacks the latest checkpoint (it was down); a failing round never stops the loop."""

from __future__ import annotations

from taxaddr.audit.witnessing import WitnessLoop


def test_rounds_only_when_the_tree_grew_or_a_witness_is_missing() -> None:
    size = [5]
    missing = [0]
    loop = WitnessLoop(lambda: missing[0], lambda: size[0], 10.0)
    loop.tick()
    assert loop.rounds == 1
    loop.tick()
    loop.tick()
    assert loop.rounds == 1  # nothing grew, every witness cosigned: no request
    size[0] = 6
    missing[0] = 1  # one witness is down during this round
    loop.tick()
    assert loop.rounds == 2
    loop.tick()  # the same size, but a witness still lacks it: try again
    assert loop.rounds == 3
    missing[0] = 0  # it is back and cosigned
    loop.tick()
    assert loop.rounds == 4
    loop.tick()
    assert loop.rounds == 4


def test_a_failing_round_is_retried_and_does_not_escape() -> None:
    calls = []

    def round_() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database away")
        return 0

    loop = WitnessLoop(round_, lambda: 3, 10.0)
    loop.tick()
    loop.tick()
    loop.tick()
    assert len(calls) == 2


def _hostile_witness(mode: str) -> tuple[object, int]:
    """A local 'witness' that answers 200 forever, one byte at a time, or a huge body."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            try:
                if mode == "trickle":
                    for _ in range(200):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                else:
                    for _ in range(10**4):
                        self.wfile.write(b"y" * 4096)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_a_trickling_or_flooding_witness_is_dropped_within_the_bounds() -> None:
    """Per-read timeouts alone let a witness that sends a byte every 0.1 s hold a round
    (and so every other witness) for as long as it likes; an endless answer would be
    read into memory. The client bounds both: total time and answer size."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from taxaddr.audit.checkpoint import Checkpoint, sign_checkpoint
    from taxaddr.audit.cosignature import CosignerKey
    from taxaddr.audit.merkle import EMPTY_ROOT
    from taxaddr.audit.witnessing import WitnessClient, WitnessEndpoint

    origin = "taxaddr.test/audit"
    note = sign_checkpoint(Checkpoint(origin, 0, EMPTY_ROOT), Ed25519PrivateKey.generate(), origin)
    for mode in ("trickle", "flood"):
        server, port = _hostile_witness(mode)
        endpoint = WitnessEndpoint(
            CosignerKey.generate("w.example").cosigner, f"http://127.0.0.1:{port}"
        )
        client = WitnessClient([endpoint], timeout=1.0, total=1.5)
        started = time.monotonic()
        try:
            assert client.cosign(endpoint, note, lambda old: []) is None
            assert time.monotonic() - started < 5, mode
        finally:
            client.close()
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
