"""Repeated errors: one line per kind and interval, with a count; connection caps."""

import logging

from shoal.conn_limits import ConnectionLimits
from shoal.log_throttle import LogThrottle


def test_one_line_per_interval_with_count(caplog):
    now = [0.0]
    t = LogThrottle(logging.getLogger("t"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for i in range(10_000):
            now[0] = i / 1000
            t.log(logging.WARNING, "emfile", "accept failed: %s", "EMFILE")
        now[0] = 10.5
        t.log(logging.WARNING, "emfile", "accept failed: %s", "EMFILE")
        t.log(logging.WARNING, "other", "something else")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["accept failed: EMFILE",
                     "accept failed: EMFILE (and 9999 more like it in the last 10 s)",
                     "something else"]


def test_connection_limits_total_and_per_source():
    c = ConnectionLimits(max_total=5, max_per_source=2)
    assert c.try_open("a") and c.try_open("a") and not c.try_open("a")
    assert c.try_open("b") and c.try_open("c") and c.try_open("d")
    assert not c.try_open("e")
    for s in ("a", "a", "b", "c", "d"):
        c.close(s)
    assert c.total == 0 and not c.per_source
