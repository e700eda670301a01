"""Token buckets per key (a client address, a DID), bounded in memory; shared by every service.

Pure logic: the caller passes the time, so tests need no clock.
"""

from __future__ import annotations

from collections import OrderedDict


class RateLimiter:
    """`burst` tokens per key, refilled at `per_minute` tokens a minute.

    At most `max_keys` buckets are kept; the least recently used one is dropped
    first. A dropped bucket comes back full, so the bound only matters for
    keys that have been quiet longer than anybody else's.
    """

    def __init__(self, burst: int, per_minute: float, max_keys: int = 100_000) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("rate limit burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Spend one token for `key`. Returns 0 when allowed, else the seconds to wait."""
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1.0:
            wait = 0.0
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
