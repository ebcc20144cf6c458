"""Admission limits: sliding windows, lockout with backoff, bounded tables (sans-IO)."""

import pytest

from shoal.server.rate_limits import MAX_LOCKOUT, RateLimited, ServerLimits, WindowLimiter


def test_sixth_wrong_password_is_refused_until_the_window_passes():
    lim = ServerLimits(WindowLimiter(100, 60), WindowLimiter(100, 60), WindowLimiter(5, 60),
                       WindowLimiter(100, 60))
    for i in range(5):
        lim.check_password("198.51.100.7", "club", float(i))
        lim.password_result("198.51.100.7", "club", False, float(i))
    with pytest.raises(RateLimited, match=r"try again in 60 s") as e:
        lim.check_password("198.51.100.7", "club", 4.0)
    assert e.value.retry_after == 60
    lim.check_password("198.51.100.8", "club", 4.0)        # other sources are not locked out
    lim.check_password("198.51.100.7", "other", 4.0)       # nor other networks
    lim.check_password("198.51.100.7", "club", 64.0)       # the wait is over
    lim.password_result("198.51.100.7", "club", True, 64.0)
    assert len(lim.password_source) == 0                   # success forgets the failures


def test_lockouts_back_off_and_are_capped():
    w = WindowLimiter(1, 10)
    assert w.hit("k", 0.0) == 10
    assert w.hit("k", 10.0) == 20
    assert w.hit("k", 30.0) == 40
    for t in range(20):
        lock = w.hit("k", 100.0 + t)
    assert lock == MAX_LOCKOUT
    w2 = WindowLimiter(1, 10)
    w2.hit("k", 0.0)
    assert w2.hit("k", 100.0) == 10     # after a quiet period, back to one window


def test_per_network_limit_covers_many_sources():
    lim = ServerLimits(WindowLimiter(100, 60), WindowLimiter(100, 60), WindowLimiter(5, 60),
                       WindowLimiter(3, 60))
    for i in range(3):
        lim.password_result(f"192.0.2.{i}", "club", False, 1.0)
    with pytest.raises(RateLimited):
        lim.check_password("192.0.2.99", "club", 2.0)


def test_tables_stay_bounded_and_sweep():
    w = WindowLimiter(5, 10, max_keys=100)
    for i in range(1000):
        w.hit(f"198.51.100.{i}", 0.0)
    assert len(w) <= 100
    w.sweep(100.0)
    assert len(w) == 0


def test_check_and_hit_counts_logins():
    w = WindowLimiter(3, 60)
    for t in range(3):
        w.check_and_hit("a", float(t), "too many logins")
    with pytest.raises(RateLimited, match="too many logins; try again in"):
        w.check_and_hit("a", 3.0, "too many logins")
