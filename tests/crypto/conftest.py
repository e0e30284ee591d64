"""Fixtures for the key store tests: a real SoftHSM2 token per test."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest

from taxaddr.crypto.pkcs11_store import Pkcs11KeyStore

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
USER_PIN = "1234"
SO_PIN = "5678"
_labels = itertools.count(1)


@pytest.fixture(scope="session")
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private SoftHSM2 token directory for this test run (never the system one)."""
    if not Path(SOFTHSM_MODULE).is_file() or shutil.which("softhsm2-util") is None:
        pytest.fail("softhsm2 is not installed (make sysdeps installs it)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        yield conf


def _init_token(label: str) -> None:
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    # SoftHSM2 only sees tokens created by another process after C_Initialize again
    lib = pkcs11._loaded.get(SOFTHSM_MODULE)
    if lib is not None:
        lib.reinitialize()


@pytest.fixture
def token_label(softhsm_conf: Path) -> str:
    """A fresh, empty token (its own label) for one test."""
    label = f"taxaddr-test-{next(_labels)}"
    _init_token(label)
    return label


@pytest.fixture
def hsm_store(keys_dir: Path, token_label: str) -> Iterator[Pkcs11KeyStore]:
    """A PKCS#11 store on a fresh token with KEK v1 generated in the HSM."""
    store = Pkcs11KeyStore(keys_dir, SOFTHSM_MODULE, token_label, USER_PIN)
    store.new_kek_version()
    yield store
    store.close()
