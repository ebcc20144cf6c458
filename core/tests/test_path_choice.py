"""Path choice: a pure function over the path table's figures."""

from __future__ import annotations

from shoal.path import Path, PathState
from shoal.path_choice import PathFigures, better, choose
from shoal.testing.fakes import FakeNetwork
from shoal.transport import PathKind

NET = FakeNetwork()
UDP = NET.transport(("192.0.2.1", 1), "udp")
THIRD = NET.transport(("192.0.2.1", 2), "third")
RELAY = NET.transport(("relay", "me"), "relay", PathKind.RELAYED)
WSS = NET.transport(("wss", "me"), "wss", PathKind.RELAYED)
PREF = {UDP: 0, THIRD: 1, RELAY: 2, WSS: 3}


def fig(t, ep="198.51.100.2:1", rtt=0.010, loss=0.0, state=PathState.USABLE) -> PathFigures:
    return PathFigures(Path.over(t, ep), state, PREF[t], rtt, loss)


def test_direct_beats_relayed_even_when_slower():
    direct, relayed = fig(UDP, rtt=0.200), fig(RELAY, rtt=0.005)
    assert choose(None, [relayed, direct]) == direct.path
    assert better(direct, relayed) and not better(relayed, direct)


def test_config_preference_beats_measured_quality():
    udp, third = fig(UDP, rtt=0.050), fig(THIRD, rtt=0.001)
    assert choose(None, [third, udp]) == udp.path
    assert choose(third.path, [third, udp]) == udp.path
    relay, wss = fig(RELAY, rtt=0.090), fig(WSS, rtt=0.010)
    assert choose(wss.path, [wss, relay]) == relay.path


def test_quality_decides_between_paths_of_one_transport():
    near, far = fig(UDP, "10.0.0.2:1", rtt=0.002), fig(UDP, "198.51.100.2:1", rtt=0.040)
    assert choose(None, [far, near]) == near.path
    lossy = fig(UDP, "10.0.0.2:1", rtt=0.005, loss=0.9)
    clean = fig(UDP, "198.51.100.2:1", rtt=0.010)
    assert choose(lossy.path, [lossy, clean]) == clean.path


def test_hysteresis_keeps_a_path_that_is_only_slightly_worse():
    cur, other = fig(UDP, "10.0.0.2:1", rtt=0.020), fig(UDP, "198.51.100.2:1", rtt=0.018)
    assert choose(cur.path, [cur, other]) == cur.path
    # relative gain big enough, absolute gain too small: stay
    cur, other = fig(UDP, "10.0.0.2:1", rtt=0.004), fig(UDP, "198.51.100.2:1", rtt=0.001)
    assert choose(cur.path, [cur, other]) == cur.path
    # clearly better on both counts: move
    cur, other = fig(UDP, "10.0.0.2:1", rtt=0.050), fig(UDP, "198.51.100.2:1", rtt=0.010)
    assert choose(cur.path, [cur, other]) == other.path


def test_only_usable_paths_are_chosen_and_a_lost_current_is_left():
    lost = fig(UDP, state=PathState.LOST)
    untried = fig(THIRD, state=PathState.UNTRIED)
    relay = fig(RELAY)
    assert choose(lost.path, [lost, untried, relay]) == relay.path
    assert choose(lost.path, [lost, untried]) == lost.path  # nothing better known
    assert choose(None, []) is None


def test_unmeasured_usable_path_is_usable_but_ranks_last_within_its_kind():
    measured, unmeasured = fig(UDP, "10.0.0.2:1", rtt=0.5), fig(UDP, "10.0.0.3:1", rtt=None)
    assert choose(None, [unmeasured, measured]) == measured.path
    assert choose(None, [unmeasured]) == unmeasured.path
