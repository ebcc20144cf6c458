"""Path tables and path probes, sans-IO (injected time)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal import path_probe as pp
from shoal.identity import StaticKeypair
from shoal.path import Path, PathState
from shoal.path_table import DEAD_AFTER, RETRY_INTERVAL, WINDOW, PeerPaths
from shoal.testing.fakes import FakeNetwork
from shoal.transport import PathKind

NET = FakeNetwork()
UDP = NET.transport(("192.0.2.1", 1), "udp")
RELAY = NET.transport(("relay", "me"), "relay", PathKind.RELAYED)
DIRECT = Path.over(UDP, ("198.51.100.2", 41641))
RELAYED = Path.over(RELAY, ("relay", "ab"))


def test_probe_answered_makes_a_path_usable_with_rtt():
    tab = PeerPaths("bob")
    tab.entry(DIRECT, 0.0)
    [(e, txid)] = tab.due(10.0)
    assert e.state is PathState.UNTRIED
    assert tab.on_pong(txid, 10.02) is e
    assert e.state is PathState.USABLE and e.rtt == pytest.approx(0.02) and e.loss == 0.0
    assert tab.on_pong(txid, 10.03) is None   # a second pong for the same txid counts nothing


def test_unanswered_probes_mean_loss_then_lost():
    tab = PeerPaths("bob")
    e = tab.entry(DIRECT, 0.0)
    [(_, txid)] = tab.due(0.0)
    tab.on_pong(txid, 0.01)
    t = 0.0
    while t < DEAD_AFTER + 1:
        t += 0.25
        tab.due(t)                   # probes go out, nobody answers
    assert e.state is PathState.LOST and e.loss > 0.5
    assert e.next_probe - t <= RETRY_INTERVAL   # lost paths are still retried
    [(_, txid)] = tab.due(e.next_probe)
    tab.on_pong(txid, e.next_probe + 0.01)
    assert e.state is PathState.USABLE         # and come back when they answer


def test_loss_is_over_a_window_of_recent_probes():
    tab = PeerPaths("bob")
    e = tab.entry(DIRECT, 0.0)
    t = 0.0
    for i in range(WINDOW * 3):
        for _, txid in tab.due(t):
            if i % 4 != 3:                      # one in four goes unanswered
                tab.on_pong(txid, t + 0.01)
        t += 0.6
    assert e.loss == pytest.approx(0.25, abs=0.1)


def test_reported_paths_are_not_probed_and_stay_until_reported_lost():
    tab = PeerPaths("bob")
    tab.offer(DIRECT, 0.005, 0.0, "ice")
    assert tab.due(100.0) == []
    assert tab.entries[DIRECT].state is PathState.USABLE
    tab.lost(DIRECT, "ice: checks stopped answering")
    assert tab.entries[DIRECT].state is PathState.LOST


def test_learned_paths_and_the_table_is_bounded():
    from shoal.path_table import MAX_PATHS

    tab = PeerPaths("bob")
    tab.learn(RELAYED, 1.0)
    assert tab.entries[RELAYED].state is PathState.USABLE
    for i in range(MAX_PATHS * 3):
        tab.entry(Path.over(UDP, ("198.51.100.9", 1000 + i)), 2.0 + i)
    assert len(tab.entries) == MAX_PATHS and RELAYED in tab.entries   # usable ones are kept


def test_probe_round_trip_and_authentication():
    a, b, c = StaticKeypair.generate(), StaticKeypair.generate(), StaticKeypair.generate()
    ab = pp.pair_key(a.private, a.public, b.public)
    ba = pp.pair_key(b.private, b.public, a.public)
    ping = pp.seal(ab, a.public, pp.PathProbe(pp.PING, b"12345678"))
    assert pp.sender_of(ping) == a.public
    assert pp.open_(ba, ping) == pp.PathProbe(pp.PING, b"12345678")
    # c cannot forge a probe from a
    forged = pp.seal(pp.pair_key(c.private, c.public, b.public), a.public,
                     pp.PathProbe(pp.PING, b"12345678"))
    with pytest.raises(pp.BadProbe):
        pp.open_(ba, forged)
    tampered = bytearray(ping)
    tampered[-1] ^= 1
    with pytest.raises(pp.BadProbe):
        pp.open_(ba, bytes(tampered))


_KP = StaticKeypair.generate()
_AEAD = pp.pair_key(_KP.private, _KP.public, StaticKeypair.generate().public)


@given(st.binary(max_size=200))
def test_probe_parser_never_raises_anything_but_bad_probe(data):
    for packet in (data, pp.PREFIX + data):
        try:
            pp.sender_of(packet)
            pp.open_(_AEAD, packet)
        except pp.BadProbe:
            pass


def test_a_reported_kind_wins_over_a_learned_one():
    tab = PeerPaths("bob")
    ep = ("203.0.113.50", 49152)          # a peer's TURN relayed address, reached over UDP
    tab.learn(Path.over(UDP, ep), 1.0)
    tab.offer(Path(UDP, ep, PathKind.RELAYED), 0.02, 2.0, "ice: relay candidate")
    [f] = tab.figures({id(UDP): 0})
    assert f.path.kind is PathKind.RELAYED


def test_an_unanswered_probe_is_followed_by_quick_ones_and_an_answered_one_is_not():
    import itertools

    from shoal.path_table import MISSED_INTERVAL, PROBE_INTERVAL

    tab = PeerPaths("bob")
    e = tab.entry(DIRECT, 0.0)
    [(_, txid)] = tab.due(0.0)
    tab.on_pong(txid, 0.002)
    sent = []
    for t in (x / 100 for x in range(1, 300)):
        for _, txid in tab.due(t):
            sent.append(t)
            tab.on_pong(txid, t + 0.002)       # answered: one probe per PROBE_INTERVAL
    assert [round(b - a, 2) for a, b in itertools.pairwise(sent)] == [PROBE_INTERVAL] * (len(sent) - 1)
    sent = [t for t in (3 + x / 100 for x in range(1, 200)) for _ in tab.due(t)
            if e.state is PathState.USABLE]    # now nothing answers
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(sent)]
    assert len(gaps) >= 6 and all(abs(g - MISSED_INTERVAL) < 0.02 for g in gaps), gaps
    assert e.state is PathState.LOST and sent[-1] - 3 < DEAD_AFTER + PROBE_INTERVAL
