"""Case-reference verifications per second on one core, vs bare Ed25519 verify, same run.

Usage: .venv/bin/python bench/bench_cases.py [--n 5000] [--rounds 3] [--cpu 0]

Builds a throwaway migrated SQLite database that trusts one Ed25519 issuer key,
signs ``--n`` distinct valid case references (distinct jti, as real traffic would
be) and then, pinned to one CPU, measures in alternating rounds:

* ``bare``: PyNaCl (libsodium) Ed25519 verify of exactly the same signing inputs and
  signatures: the floor no verifier of these tokens can go below;
* ``full``: :func:`taxaddr.cases.verify.verify_case_reference` with a database
  session: all nine steps, including the trusted-key and revocation look-ups.

It reports the best round of each and the ratio full/bare.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from taxaddr.audit.admin import cli_actor
from taxaddr.cases import issuers, jws
from taxaddr.cases.verify import verify_case_reference
from taxaddr.config import Settings
from taxaddr.db import make_engine, write_transaction
from taxaddr.migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick


def _claims(i: int, now: int) -> dict[str, object]:
    return {
        "iss": "bench-court",
        "aud": "taxaddr",
        "jti": f"bench-{i:08d}",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 30 * 86400,
        "case": {
            "number": f"1:26-cr-{i:05d}",
            "court": "D.D.C.",
            "proceeding": "criminal",
            "statutes": ["8 U.S.C. 1326", "18 U.S.C. 1028"],
            "agency": "ICE-HSI",
            "requesters": ["hsi-agent-0042", "hsi-agent-0043"],
            "subjects": ["123-45-6789", "900-70-1234"],
            "tax_periods": ["2023", "2024"],
            "max_disclosures": 5,
        },
    }


def _rate(n: int, fn: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="tokens per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to")
    args = parser.parse_args()
    if quick():
        args.n, args.rounds = 2000, 3
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    tmp = Path(tempfile.mkdtemp(prefix="bench-cases-"))
    atexit.register(shutil.rmtree, tmp, True)  # nothing left behind in /tmp
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": jws.b64url_encode(raw), "kid": "bench-1"}
    with write_transaction(engine) as session:
        issuers.add_key(
            session,
            "bench-court",
            issuers.parse_public_jwk(jws.compact_json(jwk)),
            actor=cli_actor(),
        )

    now_dt = datetime.now(UTC)
    now = int(now_dt.timestamp())
    header = {"alg": "EdDSA", "kid": "bench-1", "typ": "JWT"}
    tokens = [jws.sign_compact(header, _claims(i, now), key) for i in range(args.n)]
    pieces = []
    for token in tokens:
        h, p, s = token.split(".")
        pieces.append(((h + "." + p).encode(), jws.b64url_decode(s)))
    settings = Settings(env="test", database_url=url, keys_dir=tmp / "keys")
    verify_key = nacl.signing.VerifyKey(raw)

    def bare(i: int) -> None:
        signing_input, signature = pieces[i]
        verify_key.verify(signing_input, signature)

    bare_rates: list[float] = []
    full_rates: list[float] = []
    with Session(engine) as session:

        def full(i: int) -> None:
            verify_case_reference(tokens[i], session=session, settings=settings, now=now_dt)

        full(0)  # warm caches (key object, compiled statements)
        for _ in range(args.rounds):
            bare_rates.append(_rate(args.n, bare))
            full_rates.append(_rate(args.n, full))
    engine.dispose()

    token_bytes = statistics.mean(len(t) for t in tokens)
    best_bare, best_full = max(bare_rates), max(full_rates)
    print(f"tokens: {args.n} distinct, {token_bytes:.0f} bytes each; one core (cpu {args.cpu})")
    print(f"bare Ed25519 verify (PyNaCl): {best_bare:,.0f}/s  rounds: "
          + ", ".join(f"{r:,.0f}" for r in bare_rates))  # fmt: skip
    print(f"verify_case_reference (SQLite): {best_full:,.0f}/s  rounds: "
          + ", ".join(f"{r:,.0f}" for r in full_rates))  # fmt: skip
    print(f"ratio full/bare: {best_full / best_bare:.2f}")
    emit("case-reference verification, distinct tokens", best_full, "/s", limit=">= 0.7 of bare",
         baseline="bare PyNaCl Ed25519 verify", baseline_value=best_bare,
         ok=best_full / best_bare >= 0.7)  # fmt: skip


if __name__ == "__main__":
    main()
