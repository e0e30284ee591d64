"""The PostgreSQL rate limiter: one bucket per requester for every replica of a deployment."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from taxaddr.api.app import rate_limiter
from taxaddr.config import Settings
from taxaddr.db import make_engine
from taxaddr.disclosure.ratelimit import DatabaseRateLimiter, RateLimiter, SharedRateLimiter
from taxaddr.errors import RateLimited
from taxaddr.migrate import upgrade
from tests.pg import free_port

pytestmark = pytest.mark.postgres


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[Engine]]:
    """Two engines on one database: two replicas' connection pools."""
    upgrade(pg_url)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    yield engines
    for engine in engines:
        engine.dispose()


def _outcome(limiter: DatabaseRateLimiter, key: str) -> int:
    try:
        limiter.take(key)
    except RateLimited as exc:
        return exc.retry_after
    return 0


def test_concurrent_takes_on_two_replicas_spend_one_bucket(replicas: list[Engine]) -> None:
    # 6 per minute: a full bucket of 6 and one token per 10 s, so the 40 takes of this
    # test (well under 10 s) can be granted 6 times between them, whatever the replica.
    limiters = [DatabaseRateLimiter(6, engine) for engine in replicas]
    results: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def worker(n: int) -> None:
        limiter = limiters[n % 2]
        start.wait()
        for _ in range(2):
            outcome = _outcome(limiter, "agent-7")
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    assert results.count(0) == 6
    assert all(1 <= wait <= 10 for wait in results if wait)
    # another requester has its own full bucket
    assert _outcome(limiters[0], "agent-8") == 0


def test_bucket_refills_at_the_configured_rate(replicas: list[Engine]) -> None:
    limiter = DatabaseRateLimiter(60, replicas[0])
    assert sum(_outcome(limiter, "k") == 0 for _ in range(60)) == 60
    assert _outcome(limiter, "k") == 1  # one token a second
    with replicas[0].begin() as conn:  # move the bucket's clock 2.5 s back: 2.5 tokens
        conn.execute(text("UPDATE rate_limit_buckets SET updated_at = updated_at - 2.5"))
    assert [_outcome(limiter, "k") == 0 for _ in range(3)] == [True, True, False]


def test_rows_hold_a_digest_not_the_key(replicas: list[Engine]) -> None:
    DatabaseRateLimiter(10, replicas[0]).take("hsi-agent-0042")
    with replicas[0].connect() as conn:
        keys = [bytes(k) for (k,) in conn.execute(text("SELECT key FROM rate_limit_buckets"))]
    assert len(keys) == 1
    assert len(keys[0]) == 16
    assert b"hsi-agent" not in keys[0]


def test_zero_disables_without_touching_the_database(replicas: list[Engine]) -> None:
    limiter = DatabaseRateLimiter(0, replicas[0])
    for _ in range(100):
        limiter.take("k")
    with replicas[0].connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rate_limit_buckets")).scalar() == 0


def test_database_down_is_an_error_not_a_grant() -> None:
    # OperationalError is what the decision path answers 503 database_unavailable with
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(OperationalError):
            DatabaseRateLimiter(10, engine).take("k")
    finally:
        engine.dispose()


def test_the_app_picks_the_database_limiter_on_postgresql(replicas: list[Engine]) -> None:
    settings = Settings(env="test", rate_limit=5)
    assert isinstance(rate_limiter(settings, replicas[0]), DatabaseRateLimiter)
    sqlite = make_engine("sqlite://")
    try:
        assert isinstance(rate_limiter(settings, sqlite), RateLimiter | SharedRateLimiter)
    finally:
        sqlite.dispose()
