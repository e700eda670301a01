from __future__ import annotations

import pytest

from hearth.ratelimit import RateLimiter


def test_burst_then_refill() -> None:
    rl = RateLimiter(burst=3, per_minute=60)
    assert [rl.take("a", 100.0) for _ in range(3)] == [0, 0, 0]
    assert rl.take("a", 100.0) == pytest.approx(1.0)
    assert rl.take("b", 100.0) == 0  # another address has its own bucket
    assert rl.take("a", 101.0) == 0  # one token back after a second
    assert rl.take("a", 101.0) > 0


def test_refill_caps_at_burst() -> None:
    rl = RateLimiter(burst=2, per_minute=60)
    rl.take("a", 0.0)
    rl.take("a", 0.0)
    assert [rl.take("a", 1000.0) for _ in range(3)][:2] == [0, 0]
    assert rl.take("a", 1000.0) > 0


def test_bounded_memory() -> None:
    rl = RateLimiter(burst=1, per_minute=1, max_keys=10)
    for i in range(100):
        rl.take(f"k{i}", 0.0)
    assert len(rl) == 10
    assert rl.take("k99", 0.0) > 0  # recent keys are still remembered


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(burst=0, per_minute=1)
