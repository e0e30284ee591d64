"""Wraps/unwraps per second: PKCS#11 (SoftHSM2) key store vs the file key store, same run.

Usage: .venv/bin/python bench/bench_pkcs11.py [--n 5000] [--threads 2]

Creates a throwaway SoftHSM2 token directory (SOFTHSM2_CONF points at it), a
throwaway file key store, and measures single-threaded wrap and unwrap of
32-byte data keys, then the same with several threads sharing one store.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from taxaddr.crypto.keystore import FileKeyStore, init_dev_keys
from taxaddr.crypto.pkcs11_store import Pkcs11KeyStore

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchline import emit, quick  # noqa: E402


def _rate(n: int, fn: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def _threaded_rate(n: int, threads: int, fn: Callable[[int], object]) -> float:
    per = n // threads

    def work() -> None:
        for i in range(per):
            fn(i)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * threads / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if quick():
        args.n = min(args.n, 1000)

    tmp = Path(tempfile.mkdtemp(prefix="bench-pkcs11-"))
    atexit.register(shutil.rmtree, tmp, True)  # nothing left behind in /tmp
    (tmp / "tokens").mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        check=True,
        capture_output=True,
    )
    init_dev_keys(tmp / "keys")
    hsm = Pkcs11KeyStore(tmp / "keys", MODULE, "bench", "1234")
    hsm.new_kek_version()
    keys = [os.urandom(32) for _ in range(args.n)]
    print(f"n={args.n} threads={args.threads} python={sys.version.split()[0]}")
    print(f"{'store':18} {'wrap/s':>10} {'unwrap/s':>10} {'wrap/s MT':>10} {'unwrap/s MT':>12}")
    _measure("file", FileKeyStore(tmp / "keys"), keys, args.threads)
    _measure("pkcs11/softhsm2", hsm, keys, args.threads)
    hsm.close()


def _measure(name: str, store: FileKeyStore, keys: list[bytes], threads: int) -> None:
    n = len(keys)
    version = store.current_kek_version()
    for k in keys[:100]:  # warm-up
        store.wrap_with(version, k)
    wrap_rate = _rate(n, lambda i: store.wrap_with(version, keys[i]))
    wrapped = [store.wrap_with(version, k) for k in keys]
    unwrap_rate = _rate(n, lambda i: store.unwrap(version, wrapped[i]))
    for i in range(0, n, max(1, n // 50)):
        assert store.unwrap(version, wrapped[i]) == keys[i]
    wrap_mt = _threaded_rate(n, threads, lambda i: store.wrap_with(version, keys[i]))
    unwrap_mt = _threaded_rate(n, threads, lambda i: store.unwrap(version, wrapped[i]))
    print(f"{name:18} {wrap_rate:10.0f} {unwrap_rate:10.0f} {wrap_mt:10.0f} {unwrap_mt:12.0f}")
    emit(f"key unwrap ({name})", unwrap_rate, "/s", limit="(reported)")


if __name__ == "__main__":
    main()
