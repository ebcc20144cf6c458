"""Storm protection: the per-node token bucket, with an injected clock."""

import pytest
from shoal_frames_broadcast.token_bucket import TokenBucket


def test_burst_then_rate():
    b = TokenBucket(rate=10, burst=5, now=0.0)
    assert [b.take(0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert b.take(0.05) is False          # half a token
    assert b.take(0.1) is True            # one token after 0.1 s at 10/s
    assert b.take(0.1) is False


def test_refill_is_capped_at_burst():
    b = TokenBucket(rate=100, burst=3, now=0.0)
    for _ in range(3):
        b.take(0.0)
    assert sum(b.take(1000.0) for _ in range(10)) == 3


def test_sustained_storm_is_held_to_the_rate():
    b = TokenBucket(rate=50, burst=50, now=0.0)
    sent = sum(b.take(i * 0.0001) for i in range(100_000))  # 10 s at 10 kpps
    assert 50 + 50 * 10 - 2 <= sent <= 50 + 50 * 10 + 1


def test_clock_going_backwards_grants_nothing():
    b = TokenBucket(rate=10, burst=1, now=5.0)
    assert b.take(5.0)
    assert not b.take(4.0)


def test_bad_parameters():
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0, 0.0)
