"""Path control: a path a plugin vouched for is checked by the core once the peer goes
quiet on it, and left when it does not answer (sans-IO, fake transports and clock)."""

from __future__ import annotations

from types import SimpleNamespace

from shoal.identity import StaticKeypair
from shoal.path import Path, PathState
from shoal.path_control import VERIFY_AFTER, PathControl
from shoal.path_table import DEAD_AFTER
from shoal.testing.fakes import FakeNetwork, FakeTransport
from shoal.transport import PathKind


def world():  # type: ignore[no-untyped-def]
    net = FakeNetwork()
    udp = FakeTransport(net, ("192.0.2.1", 1), "udp")
    relay = FakeTransport(net, ("192.0.2.1", 2), "relay", kind=PathKind.RELAYED)
    now = [100.0]
    changes: list[str] = []
    peer = SimpleNamespace(public_key=b"p" * 32, name="p", path=None, tunnel_up=True,
                           candidates=[], silent=0.0)
    peer.set_path = lambda path, why: (setattr(peer, "path", path), changes.append(why))
    peer.unanswered_for = lambda t: peer.silent
    pc = PathControl({peer.public_key: peer}, [udp, relay], clock=lambda: now[0],
                     keypair=StaticKeypair.generate())
    direct = Path.over(udp, ("198.51.100.7", 4000))
    relayed = Path.over(relay, ("relay", "ab"))
    pc.offer(peer.public_key, direct, 0.001, "connectivity check answered")
    pc.table(peer).learn(relayed, now[0])
    assert peer.path == direct
    return pc, peer, now, changes, direct, relayed


def run(pc, peer, now, relayed, seconds: float) -> None:  # type: ignore[no-untyped-def]
    end = now[0] + seconds
    while now[0] < end:
        now[0] += 0.25
        pc.table(peer).learn(relayed, now[0])     # the relay keeps answering
        pc.tick()


def test_a_vouched_path_the_peer_went_quiet_on_is_probed_then_left():
    pc, peer, now, changes, direct, relayed = world()
    peer.silent = VERIFY_AFTER - 1                # quiet, but not for long: trusted
    run(pc, peer, now, relayed, 3)
    assert peer.path == direct and pc.table(peer).entries[direct].reported
    peer.silent = VERIFY_AFTER + 1                # sending, nothing back: check it
    run(pc, peer, now, relayed, 0.25)
    entry = pc.table(peer).entries[direct]
    assert not entry.reported and entry.state is PathState.USABLE and peer.path == direct
    run(pc, peer, now, relayed, DEAD_AFTER + 0.5)   # no pong comes back
    assert entry.state is PathState.LOST and peer.path == relayed
    assert "current path lost" in changes[-1], changes


def test_a_vouched_path_that_answers_the_core_stays():
    pc, peer, now, _changes, direct, _relayed = world()
    peer.silent = VERIFY_AFTER + 1                # e.g. one-way traffic: nothing comes back
    tab = pc.table(peer)
    for _ in range(12):
        now[0] += 0.25
        for entry, txid in tab.due(now[0]):
            if entry.path == direct:              # but the path answers probes
                tab.on_pong(txid, now[0] + 0.001)
        pc.tick()
    assert peer.path == direct and tab.entries[direct].state is PathState.USABLE
    # the plugin reports it again: back to trusting its reports
    pc.offer(peer.public_key, direct, 0.001, "connectivity check answered")
    assert tab.entries[direct].reported
