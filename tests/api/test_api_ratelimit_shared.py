"""The file-backed rate limiter: RateLimiter's buckets, shared by every worker process."""

from __future__ import annotations

import fcntl
import math
import multiprocessing
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from taxaddr.disclosure.ratelimit import RateLimiter, SharedRateLimiter
from taxaddr.errors import RateLimited

HEADER_SIZE = 16
RECORD_SIZE = 32


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def granted(take: Callable[[str], None], key: str) -> int:
    """0 when ``take(key)`` granted a token, else the Retry-After it refused with."""
    try:
        take(key)
    except RateLimited as exc:
        return exc.retry_after
    return 0


def drain(limiter: SharedRateLimiter, key: str, attempts: int) -> int:
    """How many of ``attempts`` takes for ``key`` were granted."""
    return sum(granted(limiter.take, key) == 0 for _ in range(attempts))


# -- same semantics as RateLimiter ---------------------------------------------------


def test_burst_up_to_capacity_then_429_with_retry_after(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(60, tmp_path / "rl", clock=clock) as limiter:
        for _ in range(60):
            limiter.take("agent-1")
        with pytest.raises(RateLimited) as exc:
            limiter.take("agent-1")
    assert exc.value.retry_after == 1
    assert exc.value.code == "rate_limited"
    assert exc.value.status == 429


def test_retry_after_is_the_ceiling_of_the_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(6, tmp_path / "rl", clock=clock) as limiter:  # one token per 10 s
        assert drain(limiter, "agent-1", 6) == 6
        clock.now += 2.5
        assert granted(limiter.take, "agent-1") == 8  # ceil(7.5)


def test_refill_grants_one_token_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(60, tmp_path / "rl", clock=clock) as limiter:
        assert drain(limiter, "agent-1", 61) == 60
        clock.now += 0.5
        assert granted(limiter.take, "agent-1") == 1
        clock.now += 0.5
        limiter.take("agent-1")
        clock.now += 120.0  # refills to capacity, not beyond
        assert drain(limiter, "agent-1", 100) == 60


def test_zero_disables(tmp_path: Path) -> None:
    with SharedRateLimiter(0, tmp_path / "rl") as limiter:
        for _ in range(1000):
            limiter.take("agent-1")


def test_setting_per_minute_to_zero_later_disables(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(5, tmp_path / "rl", clock=clock) as limiter:
        assert drain(limiter, "agent-1", 6) == 5
        limiter.per_minute = 0
        for _ in range(100):
            limiter.take("agent-1")
        limiter.per_minute = 5  # re-enabled: the bucket is still empty
        assert granted(limiter.take, "agent-1") >= 1


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    per_minute=st.integers(1, 120),
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(0.0, 5.0)), max_size=150
    ),
)
def test_same_decisions_as_the_in_process_limiter(
    per_minute: int, steps: list[tuple[str, float]]
) -> None:
    clock = FakeClock()
    reference = RateLimiter(per_minute, clock=clock)
    with (
        tempfile.TemporaryDirectory() as tmp,
        SharedRateLimiter(per_minute, Path(tmp) / "rl", slots=4, clock=clock) as shared,
    ):
        for key, advance in steps:
            clock.now += advance
            expected = granted(reference.take, key)
            assert granted(shared.take, key) == expected


# -- one table in a file ---------------------------------------------------------------


def test_two_limiters_on_one_path_share_buckets(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "rl"
    with (
        SharedRateLimiter(10, path, clock=clock) as first,
        SharedRateLimiter(10, path, clock=clock) as second,
    ):
        assert drain(first, "agent-1", 7) == 7
        assert drain(second, "agent-1", 10) == 3
        assert granted(first.take, "agent-1") >= 1


def test_keys_are_independent(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(10, tmp_path / "rl", clock=clock) as limiter:
        assert drain(limiter, "agent-1", 11) == 10
        assert drain(limiter, "agent-2", 11) == 10
        assert drain(limiter, "agent-1", 1) == 0


def test_file_is_private_and_never_contains_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rl"
    key = "CN=agent-Jane-Roe,O=Example Agency,serial=4711"
    with SharedRateLimiter(3, path, slots=64) as limiter:
        for _ in range(5):
            granted(limiter.take, key)
    raw = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(raw) == HEADER_SIZE + 64 * RECORD_SIZE
    assert raw.count(bytes(16)) < len(raw) // 16  # something was written
    for needle in (key, "Jane", "agent", "4711"):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le"):
            assert needle.encode(encoding) not in raw


def test_refusals_carry_no_key(tmp_path: Path) -> None:
    clock = FakeClock()
    key = "agent-Jane-Roe"
    with SharedRateLimiter(1, tmp_path / "rl", slots=1, clock=clock) as limiter:
        limiter.take(key)
        with pytest.raises(RateLimited) as limited:
            limiter.take(key)
        with pytest.raises(RateLimited) as full:
            limiter.take("other")
    for exc in (limited.value, full.value):
        assert "Jane" not in str(exc)
        assert "other" not in str(exc)


def test_truncated_file_is_extended_and_keeps_its_buckets(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "rl"
    with SharedRateLimiter(10, path, slots=8, clock=clock) as limiter:
        assert drain(limiter, "agent-1", 4) == 4
    raw = path.read_bytes()
    slot = next(  # the record that holds agent-1's bucket
        i for i in range(8) if raw[HEADER_SIZE + i * RECORD_SIZE :][:16] != bytes(16)
    )
    cut = HEADER_SIZE + (slot + 1) * RECORD_SIZE + 7  # mid-record
    assert cut < len(raw)
    os.truncate(path, cut)
    with SharedRateLimiter(10, path, slots=8, clock=clock) as limiter:
        assert path.stat().st_size == HEADER_SIZE + 8 * RECORD_SIZE
        assert drain(limiter, "agent-1", 10) == 6  # the kept bucket still counts
        assert drain(limiter, "agent-2", 11) == 10  # the re-grown slots work


def test_empty_file_becomes_a_table(tmp_path: Path) -> None:
    path = tmp_path / "rl"
    path.touch(mode=0o644)
    with SharedRateLimiter(2, path, slots=4) as limiter:
        assert drain(limiter, "agent-1", 3) == 2
    assert path.stat().st_size == HEADER_SIZE + 4 * RECORD_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_larger_file_is_never_shrunk_and_other_sizes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rl"
    SharedRateLimiter(2, path, slots=16).close()
    with pytest.raises(ValueError, match="every worker must use the same size"):
        SharedRateLimiter(2, path, slots=8)
    assert path.stat().st_size == HEADER_SIZE + 16 * RECORD_SIZE
    with path.open("ab") as grown:
        grown.write(bytes(100))
    SharedRateLimiter(2, path, slots=16).close()
    assert path.stat().st_size == HEADER_SIZE + 16 * RECORD_SIZE + 100


def test_foreign_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_bytes(b"not a rate-limit table")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not a rate-limit table"):
        SharedRateLimiter(2, path, slots=4)
    assert path.read_bytes() == b"not a rate-limit table"


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (tmp_path / "rl").symlink_to(target)
    with pytest.raises(OSError):
        SharedRateLimiter(2, tmp_path / "rl")
    assert not target.exists()


def test_closed_limiter_refuses_to_take(tmp_path: Path) -> None:
    limiter = SharedRateLimiter(2, tmp_path / "rl")
    limiter.close()
    limiter.close()
    with pytest.raises(ValueError, match="closed"):
        limiter.take("agent-1")


def test_table_from_before_a_reboot_is_not_drained(tmp_path: Path) -> None:
    # CLOCK_MONOTONIC restarts at boot, so a kept file can hold update times from the future
    path = tmp_path / "rl"
    with SharedRateLimiter(10, path, clock=FakeClock(start=90_000.0)) as before:
        assert drain(before, "agent-1", 3) == 3
    clock = FakeClock(start=5.0)
    with SharedRateLimiter(10, path, clock=clock) as after:
        assert drain(after, "agent-1", 7) == 7
        assert granted(after.take, "agent-1") == 6  # one token per 6 s from now on
        clock.now += 6.0
        after.take("agent-1")


# -- a full table --------------------------------------------------------------------


@pytest.mark.parametrize(("idle", "busy"), [("agent-1", "agent-2"), ("agent-2", "agent-1")])
def test_full_table_reuses_a_refilled_slot(tmp_path: Path, idle: str, busy: str) -> None:
    # both orders, so that reusing whichever slot the probe meets first fails one of them
    clock = FakeClock()
    with SharedRateLimiter(60, tmp_path / "rl", slots=2, clock=clock) as limiter:
        limiter.take(idle)  # full again at +1.0 s
        clock.now += 0.5
        limiter.take(busy)  # full again at +1.5 s
        clock.now += 0.7
        limiter.take("agent-3")  # reuses the idle key's refilled slot, not the busy one's
        assert drain(limiter, "agent-3", 60) == 59
        # the busy key kept its bucket: 59.7 tokens, not a fresh 60
        assert drain(limiter, busy, 60) == 59


def test_full_table_of_active_buckets_fails_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    with SharedRateLimiter(60, tmp_path / "rl", slots=2, clock=clock) as limiter:
        limiter.take("agent-1")
        limiter.take("agent-2")
        clock.now += 0.9  # neither bucket has refilled yet
        with pytest.raises(RateLimited) as exc:
            limiter.take("agent-3")
        assert exc.value.retry_after == 1
        assert drain(limiter, "agent-1", 1) == 1  # known keys are still served
        clock.now += 60.0
        limiter.take("agent-3")


# -- real processes ------------------------------------------------------------------

PROCESSES = 3  # more than the CI machine's cores, so a holder of the lock gets preempted
ATTEMPTS = 400  # per process and phase
FROZEN_PER_MINUTE = 1000  # below PROCESSES * ATTEMPTS, and every one of its takes contends
REAL_PER_MINUTE = 50


@dataclass(frozen=True)
class Report:
    frozen_grants: int  # phase 1: a clock that never moves, so no refill at all
    real_grants: int  # phase 2: time.monotonic, as in production
    began: float  # time.monotonic around phase 2
    ended: float


def _frozen_clock() -> float:
    return 5000.0


def _hammer(directory: str, start: Barrier, results: Queue[Report]) -> None:
    """Worker process: take tokens for one shared key in both phases, report the grants."""
    with (
        SharedRateLimiter(
            FROZEN_PER_MINUTE, Path(directory) / "frozen", clock=_frozen_clock
        ) as frozen,
        SharedRateLimiter(REAL_PER_MINUTE, Path(directory) / "real") as real,
    ):
        start.wait(timeout=30)
        frozen_grants = drain(frozen, "agent-1", ATTEMPTS)
        start.wait(timeout=30)
        began = time.monotonic()
        real_grants = drain(real, "agent-1", ATTEMPTS)
        ended = time.monotonic()
    results.put(Report(frozen_grants, real_grants, began, ended))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[Report]:
    """Run the worker processes once (spawned, as the supervisor starts them)."""
    directory = tmp_path_factory.mktemp("shared-rl")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    results: Queue[Report] = ctx.Queue()
    workers = [
        ctx.Process(target=_hammer, args=(str(directory), start, results)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        collected = [results.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    return collected


def test_processes_share_one_bucket_exactly(reports: list[Report]) -> None:
    grants = [report.frozen_grants for report in reports]
    assert sum(grants) == FROZEN_PER_MINUTE, grants  # no lost update, no double grant
    assert min(grants) > 0, grants  # the processes really did run side by side


def test_processes_share_one_bucket_on_the_monotonic_clock(reports: list[Report]) -> None:
    total = sum(report.real_grants for report in reports)
    # The bucket is full at the first take and refills 50/60 tokens per second after it,
    # so over the window at most floor(window * 50 / 60) more takes can succeed: none
    # while the window is under 1.2 s.
    window = max(r.ended for r in reports) - min(r.began for r in reports)
    refilled = math.floor(window * REAL_PER_MINUTE / 60.0)
    assert REAL_PER_MINUTE <= total <= REAL_PER_MINUTE + refilled, (total, window)


def _forked_child(
    limiter: SharedRateLimiter, ready: Event, held: Event, results: Queue[str]
) -> None:
    limiter.take("agent-1")  # the first take in the child opens its own file description
    ready.set()
    held.wait(timeout=30)
    try:
        fcntl.flock(limiter._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        results.put("excluded")
    else:
        results.put("not excluded")


def test_forked_child_is_excluded_by_the_parents_lock(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    with SharedRateLimiter(100, tmp_path / "rl", clock=_frozen_clock) as limiter:
        limiter.take("agent-1")
        ready, held = ctx.Event(), ctx.Event()
        results: Queue[str] = ctx.Queue()
        child = ctx.Process(target=_forked_child, args=(limiter, ready, held, results))
        child.start()
        try:
            assert ready.wait(timeout=30)
            fcntl.flock(limiter._fd, fcntl.LOCK_EX)
            held.set()
            outcome = results.get(timeout=30)
        finally:
            fcntl.flock(limiter._fd, fcntl.LOCK_UN)
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
        assert outcome == "excluded"
        assert drain(limiter, "agent-1", 100) == 98  # the child's take counted here too
