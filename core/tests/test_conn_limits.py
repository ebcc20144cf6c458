"""Connection bounds: the global and per-source cap, and the handshake table that
sheds its oldest entries instead of refusing newcomers."""

from shoal.conn_limits import ConnectionLimits, HandshakeSlots


def test_connection_limits_cap_total_and_per_source_and_shrink_back():
    lim = ConnectionLimits(max_total=3, max_per_source=2)
    assert lim.try_open("a") and lim.try_open("a")
    assert not lim.try_open("a") and lim.refused_source == 1
    assert lim.try_open("b")
    assert not lim.try_open("c") and lim.refused_total == 1
    for src in ("a", "a", "b"):
        lim.close(src)
    assert lim.total == 0 and lim.per_source == {}


class Conn:
    def __init__(self, slots: HandshakeSlots, source: str) -> None:
        self.aborted = False
        self.token = slots.enter(source, self.abort)

    def abort(self) -> None:
        self.aborted = True


def test_a_flood_of_unfinished_handshakes_sheds_itself_not_the_newcomer():
    slots = HandshakeSlots(max_total=100, max_per_source=1000)
    flood = [Conn(slots, f"198.51.100.{i % 50}") for i in range(5000)]
    assert slots.total == 100
    assert sum(not c.aborted for c in flood) == 100 and slots.shed == 4900
    # the oldest went first: the survivors are the 100 newest
    assert all(not c.aborted for c in flood[-100:])
    honest = Conn(slots, "203.0.113.7")
    assert not honest.aborted and slots.total == 100
    slots.leave(honest.token)          # its handshake finished: the slot is free again
    assert slots.total == 99
    assert not honest.aborted


def test_one_source_at_its_cap_sheds_its_own_oldest():
    slots = HandshakeSlots(max_total=100, max_per_source=4)
    other = Conn(slots, "203.0.113.7")
    mine = [Conn(slots, "192.0.2.66") for _ in range(10)]
    assert [c.aborted for c in mine] == [True] * 6 + [False] * 4
    assert not other.aborted and slots.total == 5


def test_leaving_twice_or_after_being_shed_is_harmless_and_tables_shrink():
    slots = HandshakeSlots(max_total=2, max_per_source=2)
    a, b = Conn(slots, "x"), Conn(slots, "y")
    c = Conn(slots, "z")               # sheds a
    assert a.aborted and not b.aborted and not c.aborted
    for conn in (a, a, b, c, c):
        slots.leave(conn.token)
    assert slots.total == 0 and slots._by_source == {} and slots._all == {}


def test_peak_watch_fires_when_the_count_falls_a_long_way_since_the_last_look():
    from shoal.memory import PeakWatch

    w = PeakWatch(slack=500)
    for n in (10, 5000, 300):
        w.see(n)
    assert not w.fallen(4800)         # still near the high
    w.see(4900)
    assert w.fallen(1024)             # the refused part of a flood is gone
    assert w.fallen(0)                # then its stalled handshakes time out
    assert not w.fallen(0)            # nothing since
    w.see(300)
    assert not w.fallen(0)            # small ups and downs are no flood
