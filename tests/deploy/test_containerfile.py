"""The image's start-up path, replayed on this machine without a container engine.

The Containerfile's COPY and RUN steps run as a script with ``/opt/taxaddr``
replaced by a throwaway prefix; then, as the image's user (uid 10001, when the
test runs as root), the ENTRYPOINT runs ``db upgrade`` (the migrate job) and
``serve`` (CMD) with the image's ENV, mounted keys and a throwaway PostgreSQL,
and the HEALTHCHECK command must pass against it. The prefix is owned by root
and not writable by uid 10001, the stand-in for the read-only root filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taxaddr.crypto.keystore import init_dev_keys
from tests.deploy.containerfile import Image, parse
from tests.pg import PgCluster, free_port

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/opt/taxaddr"
IMAGE_UID = 10001

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("containerfile")]


def _as_image_user() -> list[str]:
    if os.geteuid() != 0:
        return []  # not root: the replay runs as this user
    return ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups", "--"]


def _sub(text: str, root: Path) -> str:
    return text.replace(PREFIX, str(root))


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Image, Path]]:
    image = parse(REPO / "Containerfile")
    base = Path(tempfile.mkdtemp(prefix="taxaddr-image-"))
    os.chmod(base, 0o755)  # noqa: S103 - uid 10001 must reach the prefix
    root = base / "opt-taxaddr"
    root.mkdir()
    try:
        for sources, dest in image.copies:
            target = Path(_sub(dest, root))
            for source in sources:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    place = target / src.name if dest.endswith("/") else target
                    place.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, place)
        for command in image.runs:
            done = subprocess.run(
                check=False,
                args=["sh", "-ec", _sub(command, root)],
                cwd=_sub(image.workdir, root),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"RUN {command}\n{done.stderr[-2000:]}"
        subprocess.run(["chmod", "-R", "go-w", str(root)], check=True)
        yield image, root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_containerfile_shape() -> None:
    image = parse(REPO / "Containerfile")
    assert image.base.endswith("-slim-bookworm")
    assert image.user.split(":")[0] == str(IMAGE_UID)
    assert image.entrypoint[-1].endswith("/taxaddr")
    assert image.cmd == ["serve"]
    assert image.healthcheck
    assert image.env["TAXADDR_ENV"] == "prod"


def test_containerfile_replay_refuses_unknown_instructions(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM x\nADD https://example.invalid/x /x\n")
    with pytest.raises(ValueError, match="ADD"):
        parse(bad)


def test_image_start_up_path(built: tuple[Image, Path], pg_cluster: PgCluster) -> None:
    image, root = built
    mounts = Path(tempfile.mkdtemp(prefix="taxaddr-mounts-"))
    os.chmod(mounts, 0o755)  # noqa: S103 - uid 10001 must reach the mounts
    name, url = pg_cluster.create_database()
    server: subprocess.Popen[bytes] | None = None
    try:
        keys = mounts / "keys"
        init_dev_keys(keys)
        health = mounts / "health"
        port = free_port()
        env = {k: _sub(v, root) for k, v in image.env.items()}
        env.update(
            PATH="/usr/bin:/bin",
            TAXADDR_KEYS_DIR=str(keys),
            TAXADDR_HEALTHCHECK_CERT_DIR=str(health),
            TAXADDR_DATABASE_URL=url,
            TAXADDR_HOST="127.0.0.1",
            TAXADDR_PORT=str(port),
        )
        entry = [_sub(part, root) for part in image.entrypoint]
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(keys)], check=True)
        user = _as_image_user()

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                check=False,
                args=[*user, *entry, *args],
                env=env,
                cwd="/",
                capture_output=True,
                text=True,
                timeout=120,
            )

        # the prefix is the read-only root filesystem: the image user cannot write there
        probe = subprocess.run(
            check=False, args=[*user, "touch", str(root / "x")], capture_output=True
        )
        assert probe.returncode != 0 or not user
        migrated = run("db", "upgrade")
        assert migrated.returncode == 0, migrated.stderr
        # the operator issues the health-check identity (dev certificates: not in prod mode)
        added = subprocess.run(
            check=False,
            args=[
                *entry,
                "requester",
                "add",
                "--id",
                "health",
                "--agency",
                "OPS",
                "--role",
                "monitor",
                "--issue-cert",
                str(health),
            ],
            env={**env, "TAXADDR_ENV": "test"},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(health)], check=True)
        server = subprocess.Popen(
            [*user, *entry, *image.cmd],
            env=env,
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        check = [_sub(part, root) for part in image.healthcheck]
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(
                check=False,
                args=[*user, *check],
                env=env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if done.returncode == 0:
                break
            assert server.poll() is None, (
                server.stderr.read().decode()[-2000:] if server.stderr else ""
            )
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.3)
        ready = subprocess.run(
            check=False,
            args=[*user, *check, "/readyz"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert ready.returncode == 0, ready.stderr
        # the health check fails when nothing answers
        server.terminate()
        assert server.wait(timeout=30) in (0, -15)  # a graceful stop, not a crash
        gone = subprocess.run(
            check=False, args=[*user, *check], env=env, capture_output=True, text=True, timeout=10
        )
        assert gone.returncode == 1
        assert "unhealthy" in gone.stderr
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        pg_cluster.drop_database(name)
        shutil.rmtree(mounts, ignore_errors=True)
