"""``make cluster`` / ``make cluster-stop``: one command starts, one stops, nothing left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cluster.cluster import _start_time

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("cluster")]
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cluster", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_start_and_stop_leave_nothing_behind(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    started = cli("start", "--state", str(state), "--replicas", "1", "--policy", "embedded")
    try:
        assert started.returncode == 0, started.stderr
        assert "HAProxy (TCP, mTLS at taxaddr)" in started.stdout
        recorded = json.loads((state / "cluster.json").read_text())
        procs = recorded["procs"]
        assert {"haproxy", "prometheus", "replica-0"} <= set(procs)
        assert all(_start_time(p["pid"]) == p["started"] for p in procs.values())
        busy = cli("start", "--state", str(state))
        assert busy.returncode == 1
        assert "not empty" in busy.stderr
        status = cli("status", "--state", str(state))
        assert "NOT RUNNING" not in status.stdout
    finally:
        stopped = cli("stop", "--state", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert not state.exists()
    for p in procs.values():
        assert _start_time(p["pid"]) != p["started"]  # gone (or a new process on that pid)
    data = Path(recorded["pg_dir"]) / "data" / "postmaster.pid"
    assert not data.exists()
    assert not any(
        str(state) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        for pid in os.listdir("/proc")
        if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists()
    )
    assert cli("stop", "--state", str(state)).returncode == 0  # nothing to stop: fine
