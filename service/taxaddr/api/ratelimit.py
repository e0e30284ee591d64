"""Per-requester token buckets: ``rate`` requests per minute, bursts up to ``rate``."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from taxaddr.errors import RateLimited


class RateLimiter:
    """Thread-safe token buckets keyed by requester id. ``per_minute == 0`` disables."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Consume one token for ``key`` or raise :class:`RateLimited` with Retry-After."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_second)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return
            self._buckets[key] = (tokens, now)
        wait = (1.0 - tokens) / self.refill_per_second
        raise RateLimited(math.ceil(wait), "too many disclosure requests; retry later")
