"""Rate limit (429 + Retry-After) and the case quota under 50 parallel requests."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taxaddr.disclosure.ratelimit import RateLimiter
from taxaddr.errors import RateLimited
from tests.api.apikit import Identity, World, body, build_world, leaves, run_server, tree_size


def test_rate_limit_is_429_with_retry_after(world: World, agent: Identity) -> None:
    settings = world.settings.model_copy(update={"rate_limit": 3})
    other = world.identities["agent-2"]
    case = world.case()
    with run_server(world, settings) as srv:
        with srv.client(agent) as client:
            statuses = [
                client.post("/v1/disclosures", json=body(case)).status_code for _ in range(3)
            ]
            before = tree_size(world)
            r = client.post("/v1/disclosures", json=body(case))
        with srv.client(other) as client:  # buckets are per requester identity
            r_other = client.post("/v1/disclosures", json=body(world.case(requesters=["agent-2"])))
    assert statuses == [200, 200, 200]
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert tree_size(world) == before + 1  # only agent-2's answer was audited
    assert r_other.status_code == 200


def test_token_bucket_refills_and_zero_disables() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for _ in range(60):
        limiter.take("a")
    with pytest.raises(RateLimited) as exc:
        limiter.take("a")
    assert exc.value.retry_after == 1
    now[0] += 1.0  # one token per second
    limiter.take("a")
    unlimited = RateLimiter(0)
    for _ in range(1000):
        unlimited.take("a")


def _fifty_against_quota_of_five(world: World) -> None:
    agent = world.identities.get("agent-1") or world.identity("agent-1")
    case = world.case(max_disclosures=5)
    payloads = [body(case) for _ in range(50)]
    before = tree_size(world)
    with run_server(world) as srv:

        def one(payload: dict[str, object]) -> tuple[int, str]:
            with srv.client(agent) as client:
                r = client.post("/v1/disclosures", json=payload)
            code = r.json().get("error", {}).get("code", "ok") if r.status_code != 200 else "ok"
            return r.status_code, code

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, payloads))
    counts = Counter(results)
    assert counts[(200, "ok")] == 5, counts
    assert counts[(403, "case_quota_exhausted")] == 45, counts
    new = leaves(world, before, before + 100)
    assert len(new) == 50
    assert sum(1 for leaf in new if leaf["outcome"] == "disclosed") == 5
    assert [leaf["index"] for leaf in new] == list(range(before, before + 50))


def test_quota_under_parallel_requests_sqlite(world: World) -> None:
    _fifty_against_quota_of_five(world)


@pytest.mark.postgres
def test_quota_under_parallel_requests_postgres(tmp_path: Path, pg_url: str) -> None:
    pg_world = build_world(tmp_path / "pg-world", database_url=pg_url)
    _fifty_against_quota_of_five(pg_world)
