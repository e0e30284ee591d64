"""A real OPA server for the tests: the binary, a bundle served to it, start and stop.

Where the binary comes from: ``opa`` on ``PATH``, else ``../shared/bin/opa``
beside the repository (OPA 0.61, see ``../shared/bin/README.md``). With
``CI=true`` a missing binary fails the run; elsewhere the real-OPA tests are
skipped with one line saying how to provide one.

``RealOpa`` runs ``opa run --server`` on a free 127.0.0.1 port with the
taxaddr bundle loaded from disk (``--bundle``) or fetched from a local bundle
service (``--config-file``); everything it wrote lives in a temporary directory
and the process is gone when ``stop`` returns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pg import free_port

REPO = Path(__file__).resolve().parents[2]
SHARED_OPA = REPO.parent / "shared" / "bin" / "opa"
HOW_TO_PROVIDE = (
    "no OPA binary: put `opa` (>= 0.61) on PATH or at ../shared/bin/opa "
    "(https://www.openpolicyagent.org/docs/latest/#running-opa)"
)


def find_opa() -> str | None:
    """Path of a usable OPA binary, or None."""
    on_path = shutil.which("opa")
    if on_path:
        return on_path
    if SHARED_OPA.is_file() and os.access(SHARED_OPA, os.X_OK):
        return str(SHARED_OPA)
    return None


def require_opa() -> str:
    """The OPA binary; fails under CI=true when absent, skips elsewhere."""
    found = find_opa()
    if found is not None:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {HOW_TO_PROVIDE}", pytrace=False)
    pytest.skip(HOW_TO_PROVIDE)


@dataclass
class RealOpa:
    """One ``opa run --server`` process on 127.0.0.1."""

    binary: str
    workdir: Path
    args: Sequence[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"opa-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_bundle: bool = True, timeout: float = 20.0) -> RealOpa:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "info",
                "--log-format",
                "json",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        self.wait_healthy(bundles=wait_bundle, timeout=timeout)
        return self

    def health(self, *, bundles: bool = True) -> int:
        url = f"{self.url}/health" + ("?bundles" if bundles else "")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, urllib.error.URLError):
            return 0

    def wait_healthy(self, *, bundles: bool = True, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"opa exited {self.proc.returncode}: {self.log_tail()}")
            if self.health(bundles=bundles) == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"opa not healthy within {timeout} s: {self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def opa_with_bundle(binary: str, workdir: Path, bundle: Path, *extra: str) -> RealOpa:
    """An OPA server that loads ``bundle`` from disk (not started)."""
    return RealOpa(binary, workdir, ["--bundle", str(bundle), *extra])
