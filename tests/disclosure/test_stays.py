"""A court order applied while disclosures are in flight (CONTRACT "Court orders"): no
disclosure whose leaf comes after the order's leaf may fall in the stay's scope.

Deterministic: the requests finish their read phase (no stay yet: the policy allows
them) while the writer is held; the held writer transaction then applies the stay and
commits it; only then do the requests' transactions run. The re-check of the stays
inside each transaction, after its leaf is appended, must refuse every one of them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from taxaddr.audit.admin import Actor
from taxaddr.audit.leaf import new_server_id
from taxaddr.cases.order_issue import order_claims, sign_order
from taxaddr.cases.orders import AppliedOrder, apply_order
from taxaddr.crypto.keystore import DEV_ISSUER_ID
from taxaddr.db.repositories import orders as orders_repo
from taxaddr.disclosure.core import DisclosureService, disclose_async
from taxaddr.disclosure.outcome import Caller, Outcome, Refused
from tests.api.apikit import JANE, World, body, build_world, cleanup, leaves, tree_size
from tests.disclosure.test_core import agent, der
from tests.disclosure.test_group_commit import _service

CLERK = Actor("judge-clerk", "IRS", "admin")


async def _decided_then_stayed(
    svc: DisclosureService, world: World, payloads: list[bytes], stay_token: str
) -> tuple[list[Outcome], AppliedOrder]:
    """Every request past its read phase, then the stay committed, then their writes."""
    release = threading.Event()
    started = threading.Event()
    applied: list[AppliedOrder] = []

    def hold_then_apply(session: Session) -> None:
        started.set()
        release.wait(10)
        applied.append(apply_order(session, stay_token, settings=world.settings, actor=CLERK))

    held = svc.committer.submit(hold_then_apply)
    started.wait(10)

    async def release_when_queued() -> None:
        while svc.committer._queue.qsize() < len(payloads):
            await asyncio.sleep(0.005)
        release.set()

    ident = der(agent(world))
    tasks = [disclose_async(svc, ident, p, Caller(request_id=new_server_id())) for p in payloads]
    outcomes = await asyncio.gather(release_when_queued(), *tasks)
    assert held.exception(10) is None
    return list(outcomes[1:]), applied[0]


def test_requests_decided_before_a_stay_are_refused_when_their_leaf_follows_it(
    world: World,
) -> None:
    _decided_before_written_after(world)


@pytest.mark.postgres
def test_the_same_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    world = build_world(tmp_path / "world", database_url=pg_url)
    world.identity("agent-1")
    try:
        _decided_before_written_after(world)
    finally:
        cleanup()


def _decided_before_written_after(world: World) -> None:
    svc = _service(world)
    try:
        case = world.case(number="1:26-cr-05555", max_disclosures=100)
        payloads = [json.dumps(body(case, JANE)).encode() for _ in range(6)]
        stay = order_claims(
            issuer=DEV_ISSUER_ID,
            kind="stay",
            number="1:25-cv-07777",
            court="D.D.C.",
            scope={"case_numbers": ["1:26-cr-05555"]},
            now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5),
        )
        token = sign_order(world.keystore, world.keys_dir, stay)
        before = tree_size(world)

        outcomes, applied = asyncio.run(_decided_then_stayed(svc, world, payloads, token))

        codes = Counter(o.code if isinstance(o, Refused) else type(o).__name__ for o in outcomes)
        assert codes == {"disclosure_stayed": 6}
        assert applied.leaf_index == before  # the order's leaf came first ...
        logged = leaves(world, before, tree_size(world))
        assert logged[0]["reason_codes"] == ["order_applied"]
        # ... and every request's leaf after it is a refusal with the stay's code
        assert [leaf["outcome"] for leaf in logged[1:]] == ["denied"] * 6
        assert all(leaf["reason_codes"] == ["disclosure_stayed"] for leaf in logged[1:])
        with Session(svc.engine) as session:
            assert orders_repo.exists(session, stay["jti"])
    finally:
        svc.close()
