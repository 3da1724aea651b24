"""Per-caller rate limits: a token bucket per key (an API key id, or the source address of anonymous calls)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Buckets idle this long are full again and carry no information: dropped to bound memory.
_IDLE_SECONDS = 120.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most `per_minute` calls per key, with bursts up to the same number; 0 means unlimited."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._last_sweep = clock()

    def check(self, key: str) -> float | None:
        """None if the call may proceed (and is counted); else the seconds until one more is allowed."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        self._sweep(now)
        rate = self.per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.per_minute), updated=now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < _IDLE_SECONDS:
            return
        self._last_sweep = now
        stale = [key for key, bucket in self._buckets.items() if now - bucket.updated > _IDLE_SECONDS]
        for key in stale:
            del self._buckets[key]
