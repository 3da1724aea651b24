"""Per-caller rate limits: a token bucket per key (an API key id, or the source address of anonymous calls)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mcpdo.identity import Identity, anonymous_source

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


def rpc_id(value: object) -> str | int | None:
    """A request's id as an answer may echo it: a string or an integer, else null (JSON-RPC 2.0)."""
    return value if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) else None


@dataclass(frozen=True)
class Refusal:
    """A tool call past its caller's quota: the message to answer with and the seconds to wait."""

    message: str
    retry_after: int


@dataclass(frozen=True)
class RateLimits:
    """Tool calls per minute: anonymous callers per source address, others per key or token subject. Every front
    door asks this before a `tools/call` runs (the handshake and listings are cheap and not counted)."""

    anonymous: RateLimiter
    authenticated: RateLimiter

    @classmethod
    def per_minute(cls, anonymous: int, authenticated: int) -> RateLimits:
        return cls(RateLimiter(anonymous), RateLimiter(authenticated))

    @property
    def enabled(self) -> bool:
        return self.anonymous.per_minute > 0 or self.authenticated.per_minute > 0

    def check(self, identity: Identity) -> Refusal | None:
        """Count one tool call of `identity`; a Refusal when its quota is spent."""
        if identity.is_anonymous:
            source = anonymous_source(identity.source or "local")
            limiter, key, who = self.anonymous, f"ip:{source}", "anonymous callers from this address"
        elif identity.auth_type == "oauth":
            limiter, key, who = self.authenticated, f"oauth:{identity.id}", "this token's subject"
        else:
            limiter, key, who = self.authenticated, f"key:{identity.id}", "this key"
        wait = limiter.check(key)
        if wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        text = f"Rate limit exceeded: {limiter.per_minute} tool calls per minute for {who}; retry in {seconds} s"
        return Refusal(text, seconds)
