"""Decisions through the group commit (taxaddr.db.group): several requests' transactions
in one durable commit, invariants intact; a failed group commit answers 503 to every
request in it and leaves no leaf; and the statements one disclosure costs, pinned."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from taxaddr.api.runtime import keystore_for
from taxaddr.audit.leaf import new_server_id
from taxaddr.db import make_engine
from taxaddr.disclosure.core import DisclosureService, disclose, disclose_async
from taxaddr.disclosure.outcome import Caller, Disclosed, Outcome, Unavailable
from taxaddr.disclosure.ratelimit import RateLimiter
from tests.api.apikit import JANE, World, body, leaves, tree_size
from tests.disclosure.test_core import agent, der


def _service(world: World) -> DisclosureService:
    return DisclosureService(
        settings=world.settings,
        engine=make_engine(world.settings.database_url),
        keystore=keystore_for(world.settings),
        limiter=RateLimiter(0),
    )


async def _concurrently(
    svc: DisclosureService, ident_der: bytes, payloads: list[Any]
) -> list[Outcome]:
    """Decide ``payloads`` on one event loop while the writer thread is held, so that
    their transactions queue and form one group."""
    release = threading.Event()
    started = threading.Event()

    def hold(_session: Session) -> None:
        started.set()
        release.wait(10)

    held = svc.committer.submit(hold)
    started.wait(10)

    async def release_when_queued() -> None:
        while svc.committer._queue.qsize() < len(payloads):
            await asyncio.sleep(0.005)
        release.set()

    tasks = [
        disclose_async(svc, ident_der, json.dumps(p).encode(), Caller(request_id=new_server_id()))
        for p in payloads
    ]
    outcomes = await asyncio.gather(release_when_queued(), *tasks)
    held.exception(10)
    return list(outcomes[1:])


def test_a_group_keeps_the_quota_exact_and_the_indices_gapless(world: World) -> None:
    svc = _service(world)
    try:
        case = world.case(max_disclosures=5)
        before = tree_size(world)
        outcomes = asyncio.run(
            _concurrently(svc, der(agent(world)), [body(case) for _ in range(8)])
        )
        kinds = Counter(
            "disclosed" if isinstance(o, Disclosed) else o.error.code  # type: ignore[union-attr]
            for o in outcomes
        )
        assert kinds == {"disclosed": 5, "case_quota_exhausted": 3}
        assert svc.committer.largest_group >= 8  # the eight disclosures in one commit
        # every outcome carries its leaf; indices are gapless and each is in the log
        indices = sorted(o.leaf.index for o in outcomes if o.leaf is not None)  # type: ignore[union-attr]
        after = tree_size(world)
        assert len(indices) == 8
        assert indices == list(range(after - 8, after))
        logged = leaves(world, before, after)
        assert Counter(leaf["outcome"] for leaf in logged)["disclosed"] == 5
    finally:
        svc.close()


def test_a_failed_group_commit_answers_503_to_every_request_and_leaves_no_leaf(
    world: World,
) -> None:
    svc = _service(world)
    try:
        case = world.case(max_disclosures=50)
        svc.run_write(lambda _s: None)  # the writer thread exists

        def disk_error() -> None:
            raise OperationalError("COMMIT", {}, OSError("disk I/O error"))

        svc.committer.before_commit = disk_error
        before = tree_size(world)
        outcomes = asyncio.run(
            _concurrently(svc, der(agent(world)), [body(case) for _ in range(6)])
        )
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        assert {o.error.code for o in outcomes} == {"database_unavailable"}  # type: ignore[union-attr]
        assert tree_size(world) == before
        # and the next request commits normally
        svc.committer.before_commit = None
        ok = disclose(
            svc, der(agent(world)), json.dumps(body(case)).encode(), Caller(new_server_id())
        )
        assert isinstance(ok, Disclosed)
        assert ok.leaf.index == before
    finally:
        svc.close()


# The statements one disclosure runs on SQLite, after warm-up (caches of the case
# token, the policy version and compiled statements filled):
#   read phase  BEGIN, requester by fingerprint, issuer key + jti revocation + first case
#               facts + case usage (one statement), the requester's usage (open cases,
#               subjects in 24 h, case recorded: one statement), the stays in force,
#               address by blind index, ROLLBACK
#   write       BEGIN IMMEDIATE, quota UPDATE ... RETURNING, audit head, leaf INSERT,
#               head UPDATE, the stays in force again (after the append: an order applied
#               since the read phase), accounting INSERT, requester subject INSERT, request_id
#               INSERT ... RETURNING, COMMIT (the case's sighting is written once)
# plus one audit node row per subtree the leaf completes (1 + trailing ones of its
# index). In a group of several, each member adds SAVEPOINT and RELEASE, and the
# group shares one BEGIN IMMEDIATE and one COMMIT.
READ_STATEMENTS = 7
WRITE_STATEMENTS = 10


def _trailing_ones(n: int) -> int:
    count = 0
    while n & 1:
        count += 1
        n >>= 1
    return count


def test_statements_per_disclosure_are_pinned(world: World) -> None:
    svc = _service(world)
    statements: list[str] = []

    @event.listens_for(svc.engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    try:
        case = world.case(max_disclosures=50)
        ident = der(agent(world))

        def one() -> Outcome:
            payload = json.dumps(body(case, JANE)).encode()
            return disclose(svc, ident, payload, Caller(request_id=new_server_id()))

        one()
        one()  # warm
        statements.clear()
        outcome = one()
        assert isinstance(outcome, Disclosed)
        nodes = 1 + _trailing_ones(outcome.leaf.index)
        expected = READ_STATEMENTS + WRITE_STATEMENTS + nodes
        assert len(statements) == expected, "\n".join(statements)
    finally:
        svc.close()
