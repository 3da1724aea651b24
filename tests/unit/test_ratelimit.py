"""Token buckets per caller."""

from __future__ import annotations

from mcpdo.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_gets_its_quota_then_waits_for_the_next_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    assert all(limiter.check("k") is None for _ in range(10))
    wait = limiter.check("k")
    assert wait is not None and 5.9 < wait <= 6.0
    clock.now += 6.0
    assert limiter.check("k") is None
    assert limiter.check("k") is not None


def test_callers_have_separate_buckets_and_zero_means_unlimited() -> None:
    limiter = RateLimiter(1, FakeClock())
    assert limiter.check("a") is None and limiter.check("b") is None
    assert limiter.check("a") is not None
    unlimited = RateLimiter(0, FakeClock())
    assert all(unlimited.check("a") is None for _ in range(1000))


def test_idle_buckets_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, clock)
    for index in range(100):
        limiter.check(f"ip-{index}")
    clock.now += 500
    limiter.check("fresh")
    assert len(limiter._buckets) == 1
