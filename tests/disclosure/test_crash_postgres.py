"""kill -9 of a process deciding disclosures on a real PostgreSQL, through the group
commit: every answer it gave has its committed leaf, indices stay gapless and ordered,
quota usage equals the disclosures, and ``audit verify`` passes afterwards.

The child decides disclosures from several threads (so groups form) and prints each
answered leaf index, flushed, only after ``disclose`` returned it: what the parent
reads is exactly what clients would have been answered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from taxaddr.api.runtime import engine_for, keystore_for
from taxaddr.audit.service import verify_log
from tests.api.apikit import REPO, build_world, cleanup

pytestmark = pytest.mark.postgres

CHILD = textwrap.dedent(
    """
    import json, ssl, sys, threading
    from pathlib import Path
    from taxaddr.api.runtime import engine_for, keystore_for
    from taxaddr.audit.leaf import new_server_id
    from taxaddr.config import Settings
    from taxaddr.disclosure.core import DisclosureService, disclose
    from taxaddr.disclosure.outcome import Caller, Disclosed
    from taxaddr.disclosure.ratelimit import RateLimiter

    spec = json.loads(Path(sys.argv[1]).read_text())
    settings = Settings(**spec["settings"])
    svc = DisclosureService(settings=settings, engine=engine_for(settings),
                            keystore=keystore_for(settings), limiter=RateLimiter(0))
    der = ssl.PEM_cert_to_DER_cert(Path(spec["cert"]).read_text())
    bodies = spec["bodies"]
    out = threading.Lock()

    def worker(k):
        for i in range(k, len(bodies), 4):
            outcome = disclose(svc, der, bodies[i].encode(), Caller(request_id=new_server_id()))
            if isinstance(outcome, Disclosed):
                with out:
                    print(outcome.leaf.index, flush=True)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    print("started", flush=True, file=sys.stderr)
    for t in threads: t.join()
    """
)


def test_kill_9_during_group_commits_loses_no_answered_leaf(pg_url: str, tmp_path: Path) -> None:
    from tests.api.apikit import body

    world = build_world(tmp_path / "world", database_url=pg_url)
    try:
        agent = world.identity("agent-1")
        case = world.case(max_disclosures=100_000)
        bodies = [json.dumps(body(case)) for _ in range(4000)]
        settings = {
            "env": "test",
            "database_url": pg_url,
            "keys_dir": str(world.settings.keys_dir),
            "policy_dir": str(world.settings.policy_dir),
        }
        spec = tmp_path / "child.json"
        spec.write_text(
            json.dumps({"settings": settings, "cert": str(agent.cert), "bodies": bodies})
        )
        engine = engine_for(world.settings)
        with Session(engine) as session:
            before = int(session.execute(text("SELECT tree_size FROM audit_head")).scalar_one())
        env = {**os.environ, "PYTHONPATH": str(REPO / "service") + os.pathsep + str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
        answered: list[int] = []
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while len(answered) < 150 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            answered.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()  # answers printed before the kill, still in the pipe
        child.wait(10)
        answered += [int(x) for x in rest.split()]
        assert child.returncode == -signal.SIGKILL
        assert len(answered) >= 150, "the child answered too few requests before the kill"

        with Session(engine) as session:
            size = int(session.execute(text("SELECT tree_size FROM audit_head")).scalar_one())
            rows = session.execute(
                text(
                    "SELECT leaf_index, outcome FROM audit_leaves "
                    "WHERE leaf_index >= :b ORDER BY leaf_index"
                ),
                {"b": before},
            ).all()
            used = session.execute(
                text("SELECT disclosures_used FROM case_references WHERE jti = :j"),
                {"j": _jti(case)},
            ).scalar_one()
            report = verify_log(session, keystore_for(world.settings), world.settings)
        indices = [int(i) for i, _ in rows]
        assert indices == list(range(before, size))  # gapless, ordered, head agrees
        outcomes = {int(i): o for i, o in rows}
        assert all(outcomes.get(i) == "disclosed" for i in answered)  # every answer has its leaf
        assert used == sum(1 for o in outcomes.values() if o == "disclosed")
        assert report.ok, report.message
    finally:
        cleanup()


def _jti(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])
